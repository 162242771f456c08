"""How many backward passes the gradients of an optimizer step summed, counted without the loop's help.

A loop that accumulates gradients (``loss / k`` then ``backward()`` k times, one ``optimizer.step()``) rarely
tells the guard about its micro-batches (``guard.accumulate``). When its countdown does not close the last group
of an epoch (JoeyNMT PR 81), the leftover batches' gradients stay in ``.grad`` and are applied with the next
epoch's first group: that update sums more backward passes than the others. Counting them needs one hook.

One ``register_post_accumulate_grad_hook`` on ONE parameter (the first that requires a gradient) runs once per
backward pass that reaches it, after its ``.grad`` was written. The count is the number of backward passes since
that gradient was last reset: a pass that finds a new ``.grad`` tensor (``zero_grad(set_to_none=True)``, the
first pass) or one changed in place since the last pass (``zero_grad(set_to_none=False)`` zeroes it: its version
moved by more than the one ``+=`` of accumulation) starts again at 1. So a loop that skips an optimizer step and
zeroes the gradients does not read as a spill, and one that forgets ``zero_grad`` reads as growing counts.

What does not count: ``torch.autograd.grad`` (it writes no ``.grad``), ``GradScaler.unscale_`` and clipping (no
backward), a step whose hooked parameter got no gradient (:meth:`BackwardCounter.take` gives None: no evidence).
``backward(create_graph=True)`` replaces ``.grad`` at every pass, so it always reads 1. Cost: one Python call
per backward pass (about a microsecond); nothing per parameter.
"""
from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

import torch

from trainguard.adapters.torch.grad_hook import GradientHook

__all__ = ["BackwardCounter"]


class BackwardCounter(GradientHook):
    """Backward passes summed in the watched parameter's ``.grad`` (see the module docstring)."""

    __slots__ = ("count", "fresh", "_grad", "_version")

    def __init__(self, params: Iterable[torch.Tensor]):
        self.count = 0  # backward passes since the watched gradient was last reset
        self.fresh = False  # a pass ran since the last take()
        self._grad: Any = None  # a weak reference to the watched .grad tensor (a strong one would keep it alive)
        self._version = -1
        super().__init__(next((p for p in params if p.requires_grad), None))

    def seen(self, grad: torch.Tensor | None) -> None:
        if grad is None:
            return
        version = grad._version
        if self._grad is not None and self._grad() is grad and version == self._version + 1:
            self.count += 1  # accumulated in place into the gradient of the previous pass
        else:
            self.count = 1
            self._grad = weakref.ref(grad)
        self._version = version
        self.fresh = True

    def failed(self) -> None:
        self.fresh = False  # no count from then on

    def take(self) -> int | None:
        """The count for the optimizer step being taken; None when no backward pass reached the watched
        parameter since the last step (nothing to tell)."""
        if not self.fresh:
            return None
        self.fresh = False
        return self.count
