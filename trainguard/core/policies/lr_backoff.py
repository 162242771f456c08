"""LR back-off with gradual recovery: the pure arithmetic of the LR multiplier.

The multiplier scales every param group's LR around the optimizer step only, so a user's LR scheduler, which
writes ``param_group['lr']``, keeps its own schedule and the multiplier rides on top of it. Backing off halves the
multiplier (Keras ``ReduceLROnPlateau``'s factor 0.5, PaLM-era practice of lowering the LR after a spike); recovery
multiplies it by ``2 ** (1 / recover_steps)`` per healthy step, so it doubles back in ``recover_steps`` steps, up
to a ceiling. A scale that led to trouble is not reached again: each episode that needed a back-off halves the
ceiling below the scale it began at.

>>> s = backoff(lr_scale(), 0.5)
>>> s.scale, s.ceiling
(0.5, 1.0)
"""
from __future__ import annotations

from typing import NamedTuple

__all__ = ["LrScale", "lr_scale", "backoff", "recover", "lower_ceiling"]


class LrScale(NamedTuple):
    scale: float  # the multiplier now
    ceiling: float  # recovery stops here


def lr_scale() -> LrScale:
    return LrScale(1.0, 1.0)


def backoff(s: LrScale, factor: float = 0.5, floor: float = 1e-4) -> LrScale:
    return LrScale(max(s.scale * factor, floor), s.ceiling)


def lower_ceiling(s: LrScale, failed_at: float, factor: float = 0.5) -> LrScale:
    """The scale ``failed_at`` led to trouble: recovery will stop at ``failed_at * factor``."""
    return LrScale(s.scale, min(s.ceiling, failed_at * factor))


def recover(s: LrScale, recover_steps: int = 200) -> LrScale:
    """One healthy step of recovery towards the ceiling; exactly the ceiling once reached."""
    if s.scale >= s.ceiling:
        return s
    grown = s.scale * 2.0 ** (1.0 / recover_steps)
    return LrScale(s.ceiling if grown >= s.ceiling else grown, s.ceiling)
