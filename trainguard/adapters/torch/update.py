"""The update of one torch step: what a repairer sees before it (:class:`StepContext`), and the optimizer step
taken or skipped (:func:`apply_update`).

A repairer is the torch side of the repair: the guard's own :class:`~trainguard.adapters.torch.effector.TorchEffector`
for a core policy, or an object of the user's implementing :class:`Repairer`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from trainguard.core.actions import Action
from trainguard.core.findings import Finding
from trainguard.core.session import Carried
from trainguard.core.stats import StepStats

__all__ = ["StepContext", "Repairer", "UserRepair", "apply_update"]


@dataclass
class StepContext:
    """What a repairer sees before the update of one step. Tensors are on the device; reading them syncs.

    ``grad_norm`` and ``finite`` are computed from ``vector`` when first read: a repairer that decides from
    ``host`` on a quiet step launches no kernel at all."""

    step: int
    loss: torch.Tensor  # detached 0-dim
    vector: torch.Tensor  # [loss, ||g_1||, ..., ||g_n||], float32 on the device (collect.step_vector)
    params: list[nn.Parameter]  # the parameters that have a gradient, forward order
    names: list[str]
    host: list[float] | None = None  # ``vector`` read back where that is free (CPU); None on an accelerator
    batch_size: int | None = None  # as given to ``guard.step`` (a repair may weigh a batch by its size)

    @functools.cached_property
    def grad_norm(self) -> torch.Tensor:
        """Global L2 norm of the gradients, 0-dim float32 (before any clipping)."""
        return torch.linalg.vector_norm(self.vector[1:])

    @functools.cached_property
    def finite(self) -> torch.Tensor:
        """0-dim bool: the loss and every gradient are finite."""
        return torch.isfinite(self.vector).all()


class Repairer(Protocol):
    """A repair object of the user's own, passed as ``Guard(policy=...)``.

    ``before_update`` may change the gradients in place (clipping) and returns whether to apply this update:
    a Python bool, or a 0-dim bool tensor on the device so that the decision needs no host sync (see
    :func:`apply_update`). ``after_update`` runs when the step's statistics have been fetched (up to
    ``fetch_every - 1`` steps later on GPU) with the findings they raised, and returns the actions it took;
    the guard logs them and appends them to ``guard.actions``. Setting ``stop_reason`` stops training.
    """

    def before_update(self, ctx: StepContext) -> bool | torch.Tensor: ...

    def after_update(self, stats: StepStats, findings: tuple[Finding, ...]) -> list[Action]: ...

    def close(self) -> None: ...


def is_repairer(policy: Any) -> bool:
    return all(callable(getattr(policy, hook, None)) for hook in ("before_update", "after_update", "close"))


class UserRepair:
    """A user's :class:`Repairer` as the session's repair (``trainguard.core.session.Repair``)."""

    plan = None

    def __init__(self, repairer: Repairer):
        self.repairer = repairer

    def after(self, stats: StepStats, findings: tuple[Finding, ...]) -> Carried:
        actions = tuple(self.repairer.after_update(stats, findings))
        return Carried(actions=actions, stop=getattr(self.repairer, "stop_reason", None) or None)

    def close(self) -> Carried:
        self.repairer.close()
        return Carried()

    def stand_down(self) -> list[Action]:
        return []


def apply_update(optimizer: torch.optim.Optimizer, apply: bool | torch.Tensor) -> bool | torch.Tensor:
    """Steps the optimizer, or not.

    A Python bool decides directly. A 0-dim bool tensor goes, with torch's fused optimizers (SGD, Adam,
    AdamW, Adagrad with ``fused=True``: ``_step_supports_amp_scaling``), to the optimizer as ``found_inf``,
    the way ``torch.amp.GradScaler`` skips a step: the kernel leaves the weights and the optimizer state
    (momentum, moments, Adam's step count) untouched on the device, with no sync. Any other optimizer
    reads the tensor with one ``.item()``: a host sync on GPU, free on CPU. Returns what was applied: a
    bool, or the device flag.
    """
    if isinstance(apply, torch.Tensor):
        if getattr(optimizer, "_step_supports_amp_scaling", False) and optimizer.defaults.get("fused"):
            optimizer.found_inf = (~apply.bool()).float()  # type: ignore[attr-defined]
            try:
                optimizer.step()
            finally:
                del optimizer.found_inf  # type: ignore[attr-defined]
            return apply
        apply = bool(apply.item())
    if apply:
        optimizer.step()
    return bool(apply)
