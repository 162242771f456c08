"""Skipping steps: the update of a bad step is not applied and the optimizer state stays untouched.

- :func:`skip_if_non_finite` is optax's ``apply_if_finite`` (and AMP's GradScaler): a step whose loss or
  gradients hold NaN/Inf is skipped; after ``max_consecutive`` such steps in a row the policy gives up and
  orders a stop, since skipping alone cannot save a run whose weights keep producing NaN.
- :func:`skip_outliers` skips a step whose gradient norm is an extreme outlier of its recent history (OLMo 2
  skips the update of steps whose gradient norm is far above its running level); its threshold,
  ``max(mean + z * std, ratio * mean)`` over an EMA of the norm (ZClip's statistics), is high enough that a
  healthy run never meets it.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from trainguard.core.actions import Action
from trainguard.core.policies.clipping import EmaStats, ema_push, ema_stats, zclip_threshold
from trainguard.core.policies.plan import Findings, Plan, Policy
from trainguard.core.stats import StepStats

__all__ = ["skip_if_non_finite", "SkipNonFiniteState", "skip_outliers", "SkipOutliersState"]


class SkipNonFiniteState(NamedTuple):
    notfinite_count: int  # non-finite steps in a row, now
    total_notfinite: int  # over the run


def skip_if_non_finite(max_consecutive: int | None = 20) -> Policy:
    """Skips every step whose loss or gradients are non-finite; after ``max_consecutive`` in a row (None: never)
    orders a stop."""
    if max_consecutive is not None and max_consecutive < 1:
        raise ValueError("max_consecutive must be >= 1 or None")

    def init() -> SkipNonFiniteState:
        return SkipNonFiniteState(0, 0)

    def update(stats: StepStats, findings: Findings, plan: Plan, state: SkipNonFiniteState):
        plan = plan if plan.skip_non_finite else plan._replace(skip_non_finite=True)
        if stats.loss_finite and stats.grads_finite:
            return plan, state if state.notfinite_count == 0 else SkipNonFiniteState(0, state.total_notfinite)
        state = SkipNonFiniteState(state.notfinite_count + 1, state.total_notfinite + 1)
        if max_consecutive is not None and state.notfinite_count >= max_consecutive and plan.stop is None:
            reason = (f"{state.notfinite_count} non-finite steps in a row (loss or gradients NaN/Inf); "
                      "skipping them did not help")
            plan = plan._replace(stop=reason).log(Action("stop", stats.step, "non_finite",
                                                         {"max_consecutive": max_consecutive}, {}))
        return plan, state

    return Policy("skip_if_non_finite", init, update)


class SkipOutliersState(NamedTuple):
    norms: EmaStats  # EMA statistics of the gradient norms of applied steps


def skip_outliers(z: float = 20.0, ratio: float = 10.0, alpha: float = 0.97, warmup: int = 25) -> Policy:
    """Skips a step whose gradient norm exceeds ``max(mean + z*std, ratio*mean)`` of the EMA statistics."""

    def init() -> SkipOutliersState:
        return SkipOutliersState(ema_stats())

    def threshold(s: EmaStats) -> float:
        if s.count < warmup:
            return math.inf
        return max(zclip_threshold(s, z, warmup), ratio * s.mean)

    def update(stats: StepStats, findings: Findings, plan: Plan, state: SkipOutliersState):
        norm = stats.grad_norm
        if norm is not None and math.isfinite(norm) and stats.applied and norm <= threshold(state.norms):
            state = SkipOutliersState(ema_push(state.norms, norm, alpha, warmup))
        return plan._replace(skip_above=min(plan.skip_above, threshold(state.norms))), state

    return Policy("skip_outliers", init, update)
