"""Skipping steps: the update of a bad step is not applied and the optimizer state stays untouched.

- :func:`skip_if_non_finite` is optax's ``apply_if_finite`` (and AMP's GradScaler): a step whose loss or
  gradients hold NaN/Inf is skipped; after ``max_consecutive`` such steps in a row the policy gives up and
  orders a stop, since skipping alone cannot save a run whose weights keep producing NaN.
- :func:`skip_outliers` skips a step whose gradient norm is an extreme outlier of its recent history (OLMo 2
  skips the update of steps whose gradient norm is far above its running level); its threshold,
  ``max(mean + z * std, ratio * mean)`` over an EMA of the norm (ZClip's statistics), is high enough that a
  healthy run never meets it. A norm is skipped only when it is also ``ratio`` times above the largest norm the
  run has already applied in its normal course, because a jump back into the run's own range is how a change of
  data shows itself, not how a blow-up does: a new task, a harder curriculum stage or a new image size puts the
  model back to an early, unfit state, whose gradients the run met at its start (Bengio et al. 2009 curriculum
  stages, Goodfellow et al. 2013 permuted tasks), and it learns the jump down; an explosion climbs past every
  level the run has seen, step over step (Takase et al. 2023, "Spike No More"). ZClip absorbs a sustained new
  level the same way, by not treating the run's own history as an outlier of its recent past. On the dev corpus'
  observe logs the largest norm over the largest applied before it, after the first 25 steps, is 1.78 on every
  healthy run but the permuted-task switch (4.56 at the switch); the explosions this skip is for are at 30x
  and 5,800x (torch_facerec_lr01_nan, lightning_bittensor229_lm_no_clip).

A zero gradient norm is not pushed into the statistics: the z-score rule (ZClip, Kumar et al. 2025: ``z = (g -
mean) / std`` over the EMA of the norms) needs a level to measure against, and a run whose gradient is exactly
zero (a layer wholly dead before a repair revives it, a frozen or unused network) has none; its all-zero history
would give a threshold of 0, and every step of the revived run would be an "outlier". So there is no outlier
threshold until nonzero norms have been applied (the warm-up counts them), as ``clip_outliers`` has none over a
window whose median is 0.
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
    norms: EmaStats  # EMA statistics of the gradient norms of applied steps that were no outliers
    largest: float  # the largest of those norms: the top of the run's own range


def skip_outliers(z: float = 20.0, ratio: float = 10.0, alpha: float = 0.97, warmup: int = 25) -> Policy:
    """Skips a step whose gradient norm exceeds ``max(mean + z*std, ratio*mean)`` of the EMA statistics and
    ``ratio`` times the largest norm of the run's applied non-outlier steps; zero norms are left out of the
    statistics (the module docstring says why)."""

    def init() -> SkipOutliersState:
        return SkipOutliersState(ema_stats(), 0.0)

    def outlier_bound(norms: EmaStats) -> float:  # infinite during warm-up, as zclip_threshold
        return max(zclip_threshold(norms, z, warmup), ratio * norms.mean)

    def update(stats: StepStats, findings: Findings, plan: Plan, state: SkipOutliersState):
        norm = stats.grad_norm
        if norm is not None and math.isfinite(norm) and norm > 0 and stats.applied \
                and norm <= outlier_bound(state.norms):
            state = SkipOutliersState(ema_push(state.norms, norm, alpha, warmup), max(state.largest, norm))
        threshold = max(outlier_bound(state.norms), ratio * state.largest)
        return plan._replace(skip_above=min(plan.skip_above, threshold)), state

    return Policy("skip_outliers", init, update)
