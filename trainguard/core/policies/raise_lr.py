"""``raise_lr``: a learning rate too low, raised by a power of ten (a trial repair).

Karpathy's heuristic (CS231n, "Neural Networks Part 3", 2016): each layer's update should be about 1e-3 of its
weights per step; far below it the learning rate is too low and the loss falls slowly and linearly. Evidence, from
the per-layer statistics the adapters sample:

* every weight tensor's update-to-weight ratio is at most ``max_ratio`` (1e-4, 10x below the heuristic) on
  ``samples`` (3) sampled steps in a row, and some tensor still moves (a ratio of exactly 0 is no gradient at all:
  dead units, not the learning rate);
* the loss barely declined: the median of the last ``recent`` (10) losses is still at least ``slow`` (0.7) of the
  median of the run's first ``recent`` losses (as the ``lr_too_low`` rule reads it). A run that trained well and
  then slowed down (an annealed schedule near its end, a converged model: the dev corpus' healthy runs reach a
  largest ratio of 2e-5 there) has long fallen below that.

The change: the learning rate multiplied by the largest power of ten that keeps the largest ratio seen at most
``target`` (1e-2, where the ``lr_too_high`` rule begins), at most ``max_factor`` (1e4): the usual grid of a
learning-rate search (Bengio 2012, sec. 3.1.1: a log scale). Tried as every trial is (:mod:`.trial`), over
``window`` (100) steps: a loss that crawled needs a while to fall measurably (10%) below its trend even at a rate
100x faster (a 10-class softmax at SGD lr 1e-5 raised to 1e-2: 2% below its trend after 20 steps). Kept only if
it does; a raise that blows up fails at its first non-finite step and is rolled back. A dormant-unit recycling
(:mod:`.redo`) is tried before it when both apply.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from trainguard.core.detectors.first_update import weight_update_ratios
from trainguard.core.diagnosis.fixes import FIXES
from trainguard.core.policies.plan import Findings, Plan
from trainguard.core.policies.stall import Course, barely_declined, follow_course
from trainguard.core.policies.trial import Proposal, Repair
from trainguard.core.stats import StepStats

__all__ = ["raise_lr", "SlowState"]


class SlowState(NamedTuple):
    course: Course  # the run's first and last `recent` finite losses
    tiny: tuple[float, ...]  # the largest ratio of each sampled step in the current run of tiny ones


def _largest_ratio(stats: StepStats) -> float | None:
    ratios = weight_update_ratios(stats)
    return max(ratios) if ratios else None


def raise_lr(max_ratio: float = 1e-4, samples: int = 3, recent: int = 10, slow: float = 0.7, target: float = 1e-2,
             max_factor: float = 1e4, window: int = 100) -> Repair:
    if not 0 < max_ratio < target or samples < 1 or recent < 2 or not 0 < slow < 1 or max_factor < 10 or window < 1:
        raise ValueError("raise_lr needs 0 < max_ratio < target, samples >= 1, recent >= 2, 0 < slow < 1, "
                         "max_factor >= 10, window >= 1")
    fix = FIXES["lr_too_low"][0]

    def propose(stats: StepStats, findings: Findings, plan: Plan, st: SlowState):
        st = st._replace(course=follow_course(st.course, stats, recent))
        if not stats.layers:
            return None, st
        largest = _largest_ratio(stats)
        if largest is None or not 0.0 < largest <= max_ratio:
            return None, st._replace(tiny=())
        st = st._replace(tiny=st.tiny + (largest,))
        if len(st.tiny) < samples or not barely_declined(st.course, recent, slow):
            return None, st
        factor = min(max_factor, 10.0 ** math.floor(math.log10(target / max(st.tiny))))
        if factor < 10:
            return None, st
        params = {"cause": "lr_too_low", "lr_factor": factor, "largest_update_ratio": max(st.tiny)}
        return Proposal("tiny_updates", params, fix), st

    def apply(plan: Plan, params: dict) -> Plan:
        return plan._replace(lr_scale=plan.lr_scale * params["lr_factor"])

    return Repair("raise_lr", lambda: SlowState(Course(), ()), propose, apply, window=window)
