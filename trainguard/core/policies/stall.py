"""A stalled loss, as the trial repairs that act only on a run that has stopped improving read it: the median of
the last ``recent`` finite losses is at least ``1 - min_progress`` of the median of the ``recent`` before."""
from __future__ import annotations

import statistics
from typing import NamedTuple

from trainguard.core.stats import StepStats

__all__ = ["StallState", "follow", "stalled"]


class StallState(NamedTuple):
    losses: tuple[float, ...]  # the last 2 * recent finite losses of applied steps


def follow(st: StallState, stats: StepStats, recent: int) -> StallState:
    loss = stats.loss
    if stats.applied and stats.finite and loss is not None:
        return StallState((st.losses + (float(loss),))[-2 * recent:])
    return st


def stalled(st: StallState, recent: int, min_progress: float) -> bool:
    """Both halves seen, and the second not ``min_progress`` below the first."""
    if len(st.losses) < 2 * recent:
        return False
    return statistics.median(st.losses[recent:]) >= (1.0 - min_progress) * statistics.median(st.losses[:recent])
