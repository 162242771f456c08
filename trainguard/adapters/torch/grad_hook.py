"""One ``register_post_accumulate_grad_hook`` on one parameter, held weakly and contained: what the guard's hooks
that read a gradient right after the backward wrote it share (``backward_count.py``, ``sentinel.py``).

The hook holds its owner weakly, so a guard dropped without ``close()`` leaves no live owner behind. It runs inside
the user's ``backward()``: a failure of the owner's own removes the hook (``failed()`` says what is left) instead of
raising there.
"""
from __future__ import annotations

import weakref
from typing import Any

import torch

__all__ = ["GradientHook"]


class GradientHook:
    """Calls :meth:`seen` with the watched parameter's ``.grad`` after each backward pass that reaches it."""

    __slots__ = ("_handle", "__weakref__")

    def __init__(self, watched: torch.Tensor | None):
        self._handle = None
        if watched is not None and hasattr(watched, "register_post_accumulate_grad_hook"):
            self._handle = watched.register_post_accumulate_grad_hook(_contained(weakref.ref(self)))

    @property
    def watching(self) -> bool:
        return self._handle is not None

    def seen(self, grad: torch.Tensor | None) -> None:
        raise NotImplementedError

    def failed(self) -> None:
        """What a failure of :meth:`seen` leaves behind, once the hook is removed."""

    def remove(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def _contained(owner_ref: weakref.ref) -> Any:
    def hook(param: torch.Tensor) -> None:
        owner = owner_ref()
        if owner is not None:
            try:
                owner.seen(param.grad)
            except Exception:  # noqa: BLE001 - containment: never break the user's backward
                owner.remove()
                owner.failed()
    return hook
