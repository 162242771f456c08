"""``skip_outliers`` after a history of zero gradient norms (a wholly dead layer before a repair revives it): no
outlier threshold until nonzero norms have been applied (trainguard/core/policies/skip.py)."""
from __future__ import annotations

import math

from trainguard.core.policies import Plan
from trainguard.core.policies.skip import skip_outliers
from trainguard.core.stats import StepStats


def _thresholds(norms: list[float]) -> list[float]:
    """The skip threshold standing before each step."""
    policy = skip_outliers()
    state, threshold, out = policy.init(), math.inf, []
    for step, norm in enumerate(norms):
        out.append(threshold)
        plan, state = policy.update(StepStats(step=step, loss=1.0, grad_norm=norm), (), Plan(), state)
        threshold = plan.skip_above
    return out


def test_a_revived_run_after_an_all_zero_history_is_not_skipped_as_an_outlier():
    revived = [0.05 * (1 + 0.1 * math.sin(s)) for s in range(60)]
    thresholds = _thresholds([0.0] * 100 + revived)
    assert all(norm <= t for norm, t in zip(revived, thresholds[100:]))
    # then the usual rule holds: a blow-up 100x past the revived level is skipped
    policy_after = _thresholds([0.0] * 100 + revived + [50.0])
    assert 50.0 > policy_after[-1]


def test_a_run_with_nonzero_norms_gets_the_same_thresholds_as_before_zeros_were_left_out():
    norms = [1.0 + 0.2 * math.sin(s) for s in range(80)]
    with_zero_free_history = _thresholds(norms)
    assert all(math.isinf(t) for t in with_zero_free_history[:25])  # the warm-up
    assert all(math.isfinite(t) and t >= 10.0 for t in with_zero_free_history[26:])
