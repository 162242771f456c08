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
import weakref
from typing import Any

import torch

__all__ = ["GradientSentinel", "SENTINEL_SIZE"]

SENTINEL_SIZE = 4096  # the largest parameter whose gradient the hook sums


class GradientSentinel:
    """``tripped``: a non-finite gradient reached the watched parameter since the last :meth:`take`."""

    __slots__ = ("tripped", "_handle", "__weakref__")

    def __init__(self, params: list[torch.nn.Parameter]):
        self.tripped = False
        self._handle = None
        watched = next((p for p in params if p.requires_grad and p.numel() <= SENTINEL_SIZE), None)
        if watched is not None and hasattr(watched, "register_post_accumulate_grad_hook"):
            self._handle = watched.register_post_accumulate_grad_hook(_checking(weakref.ref(self)))

    @property
    def watching(self) -> bool:
        return self._handle is not None

    def take(self) -> bool:
        """Whether a non-finite gradient came since the last call."""
        tripped, self.tripped = self.tripped, False
        return tripped

    def remove(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def _checking(sentinel_ref: weakref.ref) -> Any:
    """The hook: holds the sentinel weakly; a failure of its own removes it instead of raising in ``backward()``."""

    def hook(param: torch.Tensor) -> None:
        sentinel = sentinel_ref()
        if sentinel is None or param.grad is None:
            return
        try:
            if not math.isfinite(param.grad.sum().item()):
                sentinel.tripped = True
        except Exception:  # noqa: BLE001 - containment: never break the user's backward
            sentinel.remove()

    return hook
