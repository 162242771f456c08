"""Automatic mixed precision: the guard and a ``torch.amp.GradScaler`` (``Guard(..., scaler=scaler)``).

GradScaler's contract (torch/amp/grad_scaler.py): ``unscale_(optimizer)`` once per optimizer between the backward
and the step records a ``found_inf`` flag per device (inf or NaN in the scaled gradients); ``step(optimizer)``
calls ``optimizer.step()`` only when no flag is set; ``update()`` backs the scale off after a skip (grows it after
``growth_interval`` clean steps) and needs the flag of at least one optimizer ("No inf checks were recorded prior to
update" otherwise). So the guard unscales first (the user's own ``unscale_`` before clipping is fine: a second
call is not made), measures the unscaled gradients, lets the policy decide, then calls ``scaler.step`` when the
policy applies the step (the scaler still skips an overflow itself) and ``scaler.update()`` in every case: the
flag was recorded by ``unscale_``, so a step the policy skipped updates the scale as the scaler sees it.

An overflow step is recorded as the scaler's skip (``StepStats.scaler_skipped``), not as non-finite gradients of
the run: the scaled gradients overflowed float16, the scale backs off and training goes on, as designed. A skip at a
scale of 1 or less is no overflow of the scaling: there the gradients themselves are non-finite, and are recorded
so.
"""
from __future__ import annotations

from typing import Any

import torch

__all__ = ["check_scaler", "unscale", "overflow_and_scale", "step_and_update"]


def check_scaler(scaler: Any) -> Any:
    """The scaler if it can be one (a ``torch.amp.GradScaler`` or anything with its methods); else a one-line error."""
    if scaler is None:
        return None
    if not all(callable(getattr(scaler, name, None)) for name in ("unscale_", "step", "update", "is_enabled")):
        raise TypeError(f"Guard(scaler=...) takes the run's torch.amp.GradScaler, got {type(scaler).__name__}")
    return scaler


def unscale(scaler: Any, optimizer: torch.optim.Optimizer) -> None:
    """``scaler.unscale_(optimizer)`` unless the user already did (to clip): GradScaler refuses a second call."""
    try:
        scaler.unscale_(optimizer)
    except RuntimeError as e:
        if "already been called" not in str(e):
            raise


def overflow_and_scale(scaler: Any, optimizer: torch.optim.Optimizer, device: torch.device) -> torch.Tensor | None:
    """``[found_inf, scale]`` on ``device``, read after :func:`unscale` and before ``update()`` changes the scale
    (a copy: no sync). None when the scaler keeps no per-optimizer flags this guard can read."""
    flags = getattr(scaler, "_found_inf_per_device", None)
    scale = getattr(scaler, "_scale", None)
    if not callable(flags) or not isinstance(scale, torch.Tensor):
        return None
    found = [flag.to(device, non_blocking=True).float().reshape(()) for flag in flags(optimizer).values()]
    if not found:
        return None
    return torch.stack([torch.stack(found).sum(), scale.to(device, non_blocking=True).float().reshape(())])


def step_and_update(scaler: Any, optimizer: torch.optim.Optimizer, apply: bool | torch.Tensor) -> bool:
    """The update under the scaler: ``scaler.step`` when the policy applies the step (the scaler still skips an
    overflow), then ``scaler.update()`` always. A device decision is read once: GradScaler's own step reads its
    flags on the host for every optimizer that is not fused. Returns the policy's decision."""
    if isinstance(apply, torch.Tensor):
        apply = bool(apply.item())
    if apply:
        scaler.step(optimizer)
    scaler.update()
    return bool(apply)
