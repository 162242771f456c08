"""A NaN or Inf in the gradients, seen without a pass over them: one hook on one small parameter.

Under an overhead budget (``trainguard.core.budget``) a light step reads no gradient, and the ``safe`` policy must
still skip an update whose gradients are non-finite behind a finite loss (``sqrt`` or ``log`` at 0 inside the
network). One ``register_post_accumulate_grad_hook`` on the first small parameter in forward order (a first layer's
bias: every backward path of a sequential network ends there, and a NaN or Inf anywhere on the way reaches it)
sums that gradient right after the backward wrote it, while it is in cache: ~2 us inside each ``backward()``, where
the same sum read by the step afterwards costs ~8 us. A NaN on a branch that does not reach it is seen at the next
full step.
"""
from __future__ import annotations

import math

import torch

from trainguard.adapters.torch.grad_hook import GradientHook

__all__ = ["GradientSentinel", "SENTINEL_SIZE"]

SENTINEL_SIZE = 4096  # the largest parameter whose gradient the hook sums


class GradientSentinel(GradientHook):
    """``tripped``: a non-finite gradient reached the watched parameter since the last :meth:`take`."""

    __slots__ = ("tripped",)

    def __init__(self, params: list[torch.nn.Parameter]):
        self.tripped = False
        super().__init__(next((p for p in params if p.requires_grad and p.numel() <= SENTINEL_SIZE), None))

    def seen(self, grad: torch.Tensor | None) -> None:
        if grad is not None and not math.isfinite(grad.sum().item()):
            self.tripped = True

    def take(self) -> bool:
        """Whether a non-finite gradient came since the last call."""
        tripped, self.tripped = self.tripped, False
        return tripped
