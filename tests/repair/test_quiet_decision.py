"""The repairer's CPU fast path: a step it calls quiet from the host-read step vector is one that the exact
decision (float32 norm on the device tensors, ``step_decision``) applies unclipped, whatever the thresholds."""
from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainguard.adapters.torch.effector import _EPS, _quiet
from trainguard.core.policies import Plan, step_decision

_values = st.one_of(st.floats(min_value=-1e6, max_value=1e6, width=32),
                    st.sampled_from([math.nan, math.inf, -math.inf, 0.0]))
_norms = st.one_of(st.floats(min_value=0.0, max_value=2.0 ** 61, width=32), st.sampled_from([math.nan, math.inf]))


def _exact(plan: Plan, vector: torch.Tensor):
    """What ``TorchRepairer.before_update`` decides on CPU without the fast path."""
    grad_norm = torch.linalg.vector_norm(vector[1:])
    return step_decision(plan, bool(torch.isfinite(vector).all()), float(grad_norm), _EPS)


# A threshold: none, anywhere, or within 1% of the step's own norm, where float32 rounding could decide.
_thresholds = st.one_of(st.just(math.inf), st.floats(min_value=1e-6, max_value=1e20),
                        st.floats(min_value=0.99, max_value=1.01).map(lambda near: -near))


@settings(max_examples=400, deadline=None)
@given(loss=_values, norms=st.lists(_norms, min_size=0, max_size=8), skip_above=_thresholds, clip_norm=_thresholds,
       skip_non_finite=st.booleans())
def test_a_quiet_step_is_applied_unclipped_by_the_exact_decision(loss, norms, skip_above, clip_norm, skip_non_finite):
    vector = torch.tensor([loss, *norms], dtype=torch.float32)
    host = vector.tolist()
    total = math.hypot(*host[1:])
    skip_above, clip_norm = (-t * total if t < 0 else t for t in (skip_above, clip_norm))  # relative to the norm
    plan = Plan(skip_non_finite=skip_non_finite, skip_above=skip_above, clip_norm=clip_norm)
    if _quiet(plan, host):
        decision = _exact(plan, vector)
        assert decision.apply and decision.clip_coef == 1.0


def test_non_finite_and_outlier_steps_are_never_quiet():
    plan = Plan(skip_non_finite=True, skip_above=10.0, clip_norm=5.0)
    assert _quiet(plan, [1.0, 3.0, 2.0])
    assert not _quiet(plan, [math.nan, 3.0, 2.0])
    assert not _quiet(plan, [1.0, math.inf, 2.0])
    assert not _quiet(plan, [1.0, 4.0, 3.0])  # norm 5 reaches the clip threshold
    assert not _quiet(Plan(skip_non_finite=True), [1.0, math.nan])
    assert _quiet(Plan(skip_non_finite=True), [1.0, 1e30])
