"""The guard for trainers that take the optimizer step themselves (Lightning, HF Transformers).

:class:`TrainerStepGuard` holds a plain :class:`~trainguard.adapters.torch.guard.Guard` (same statistics,
detectors, repair policies, run log) and drives its two halves around the trainer's own update:

- ``before_update(loss, ...)``: between the last backward and the trainer's ``optimizer.step()`` (after the
  AMP scaler's ``unscale_``): ``Guard.begin_update`` measures and lets the policy decide (it may clip the
  gradients or scale the LRs in place). When the policy skips the step, every gradient is set to ``None``: torch
  optimizers leave a parameter without a gradient untouched, its momentum and Adam moments included (documented
  under ``torch.optim.Optimizer.zero_grad(set_to_none=True)``), so the trainer's step changes nothing.
- ``after_update()``: after the trainer's step, ``Guard.end_update`` measures the update (update ratio, Adam's
  moments) and reads the statistics back, which feeds the detectors, the run log and the policy's one-shot
  orders (rollback, stop...).

A stop ordered by the policy raises :class:`trainguard.TrainingStopped` from ``after_update``, as the plain
guard's ``step`` does; the integrations turn it into their trainer's own way of stopping.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trainguard.adapters.torch.guard import Guard
from trainguard.adapters.torch.integrations.options import GuardOptions
from trainguard.core.findings import Finding
from trainguard.core.session_view import SessionView

__all__ = ["TrainerStepGuard", "split_batch", "batch_length"]


class TrainerStepGuard(SessionView):
    """A :class:`Guard` whose update is the trainer's; see the module docstring."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, options: GuardOptions,
                 scheduler: Any = None):
        # budget=None: the overhead budget decides inside ``Guard.step``, and a trainer takes its own step
        self.guard = Guard(model, optimizer, scheduler=scheduler, budget=None, **options.as_kwargs())
        self.session = self.guard.session  # the guard's, for SessionView
        self._in_update = False  # between before_update and after_update
        self.last_applied = True

    @property
    def closed(self) -> bool:
        return self.guard._closed

    def event(self, kind: str, step: int | None = None, **data: Any) -> None:
        """An event for the run log (the trainer's configuration)."""
        self.guard.session.event(kind, step, **data)

    def diagnose(self) -> list[Any]:
        return self.guard.diagnose()

    def before_update(self, loss: torch.Tensor, batch_size: int | None = None, *, inputs: Any = None,
                      targets: Any = None, epoch: int | None = None) -> bool:
        """Measures the step and decides; returns whether the trainer's update will change the weights."""
        apply = self.guard.begin_update(loss, batch_size, inputs=inputs, targets=targets, epoch=epoch)
        if isinstance(apply, torch.Tensor):
            apply = bool(apply.item())
        if not apply:
            for p in self.guard.params:
                p.grad = None
        self._in_update = True
        self.last_applied = bool(apply)
        return self.last_applied

    def after_update(self) -> tuple[Finding, ...]:
        """Measures the update the trainer just made and reads the statistics (every ``fetch_every`` steps);
        returns the findings raised. Does nothing unless ``before_update`` ran since the last call."""
        if not self._in_update:
            return ()
        self._in_update = False
        return self.guard.end_update(self.last_applied)

    def flush(self) -> tuple[Finding, ...]:
        return () if self._in_update else self.guard.flush()

    def record_validation(self, loss: float | None, metrics: dict[str, float], epoch: int | None = None
                          ) -> tuple[Finding, ...]:
        """The trainer's evaluation (its loss and metrics, numbers), after the steps taken so far; nothing when
        it carries neither."""
        if self._in_update or (loss is None and not metrics):
            return ()
        return self.guard.record_validation(loss, epoch=epoch, **metrics)

    def close(self, status: str = "ok") -> None:
        self._in_update = False
        self.guard.close(status)


def split_batch(batch: Any) -> tuple[Any, Any]:
    """``(inputs, targets)`` of a batch: ``(x, y)`` pairs, dicts with ``labels``/``label``, else ``(batch, None)``."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    if isinstance(batch, dict):
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "label")}
        return inputs, batch.get("labels", batch.get("label"))
    return batch, None


def batch_length(inputs: Any) -> int | None:
    """The batch dimension of the first tensor found in ``inputs``."""
    if isinstance(inputs, torch.Tensor):
        return int(inputs.shape[0]) if inputs.dim() else None
    values = inputs.values() if isinstance(inputs, dict) else inputs if isinstance(inputs, (tuple, list)) else ()
    for value in values:
        n = batch_length(value)
        if n is not None:
            return n
    return None
