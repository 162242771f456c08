"""A loss that is not getting anywhere, as the trial repairs that act only on such a run read it: stalled (the
median of the last ``recent`` finite losses at least ``1 - min_progress`` of the median of the ``recent`` before:
:func:`follow`, :func:`stalled`), or barely declined since the start (the median of the last ``recent`` at least
``slow`` of the median of the run's first ``recent``: :func:`follow_course`, :func:`barely_declined`)."""
from __future__ import annotations

import math
import statistics
from typing import NamedTuple

from trainguard.core.stats import StepStats

__all__ = ["StallState", "follow", "stalled", "Course", "follow_course", "barely_declined"]


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


class Course(NamedTuple):
    first: tuple[float, ...] = ()  # the run's first `recent` finite losses of applied steps
    recent: tuple[float, ...] = ()  # the last `recent` of them


def follow_course(course: Course, stats: StepStats, recent: int) -> Course:
    loss = stats.loss
    if stats.applied and stats.finite and loss is not None and math.isfinite(loss):
        first = course.first if len(course.first) >= recent else course.first + (float(loss),)
        return Course(first, (course.recent + (float(loss),))[-recent:])
    return course


def barely_declined(course: Course, recent: int, slow: float) -> bool:
    """Both ends seen, and the last ``recent`` losses' median still at least ``slow`` of the first ones'."""
    if len(course.recent) < recent or len(course.first) < recent:
        return False
    return statistics.median(course.recent) >= slow * statistics.median(course.first)
