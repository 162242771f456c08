"""The guard for trainers that take the optimizer step themselves (Lightning, HF Transformers).

:class:`TrainerStepGuard` is the plain :class:`~trainguard.adapters.torch.guard.Guard` (same statistics,
detectors, repair policies, run log) with its ``step`` cut in two around the trainer's own update:

- ``before_update(loss, ...)``: between the last backward and the trainer's ``optimizer.step()`` (after the
  AMP scaler's ``unscale_``). Measures, runs the repair policy (which may clip the gradients or scale the LRs
  in place) and, when the policy skips the step, sets every gradient to ``None``: torch optimizers leave a
  parameter without a gradient untouched, its momentum and Adam moments included (documented under
  ``torch.optim.Optimizer.zero_grad(set_to_none=True)``), so the trainer's step changes nothing.
- ``after_update()``: after the trainer's step. Measures the update (update ratio, Adam's moments) and reads the
  statistics back, which feeds the detectors, the run log and the policy's one-shot orders (rollback, stop...).

A stop ordered by the policy raises :class:`trainguard.TrainingStopped` from ``after_update``, as the plain
guard's ``step`` does; the integrations turn it into their trainer's own way of stopping.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trainguard.adapters.torch.guard import Guard
from trainguard.core.findings import Finding

__all__ = ["TrainerStepGuard", "split_batch", "batch_length"]


class TrainerStepGuard(Guard):
    """A :class:`Guard` whose update is the trainer's; see the module docstring."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, **kwargs: Any):
        super().__init__(model, optimizer, **kwargs)
        self._in_update = False  # between before_update and after_update: no fetch, no update measure yet
        self._after: tuple[Any, ...] | None = None
        self.last_applied = True

    @property
    def closed(self) -> bool:
        return self._closed

    def before_update(self, loss: torch.Tensor, batch_size: int | None = None, *, inputs: Any = None,
                      targets: Any = None, epoch: int | None = None) -> bool:
        """Measures the step and decides; returns whether the trainer's update will change the weights."""
        self._in_update, self._after = True, None
        try:
            self.step(loss, batch_size, inputs=inputs, targets=targets, epoch=epoch)
        except BaseException:
            self._in_update = False
            raise
        return self.last_applied

    def after_update(self) -> tuple[Finding, ...]:
        """Measures the update the trainer just made and reads the statistics (every ``fetch_every`` steps);
        returns the findings raised. Does nothing unless ``before_update`` ran since the last call."""
        if not self._in_update:
            return ()
        self._in_update = False
        after, self._after = self._after, None
        if after is not None:
            self._try("layer statistics", super()._measure_after_update, *after)
        if len(self._pending) >= self.fetch_every:
            return self.flush()
        return ()

    def flush(self) -> tuple[Finding, ...]:
        return () if self._in_update else super().flush()

    def close(self, status: str = "ok") -> None:
        self._in_update, self._after = False, None
        super().close(status)

    def _apply_update(self, apply: bool | torch.Tensor) -> bool:
        if isinstance(apply, torch.Tensor):
            apply = bool(apply.item())
        if not apply:
            for p in self.params:
                p.grad = None
        self.last_applied = bool(apply)
        return self.last_applied

    def _measure_after_update(self, entry: Any, params: Any, grads: Any, names: Any, before: Any) -> None:
        if self._in_update:  # the trainer has not stepped yet: measure in after_update
            self._after = (entry, params, grads, names, before)
        else:
            super()._measure_after_update(entry, params, grads, names, before)


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
