"""One skip/clip decision for every path a Keras update takes: on host numbers (eager updates) it is the core's
``step_decision``; on tensors (graph and JAX updates) it gives the same answer for the same numbers."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

keras = pytest.importorskip("keras")

from keras import ops  # noqa: E402

from trainguard.adapters.keras.decision import CLIP_EPS, HOST, decide  # noqa: E402
from trainguard.core.policies import Plan, step_decision  # noqa: E402

_norms = st.one_of(st.floats(min_value=0.0, max_value=1e6), st.sampled_from([math.nan, math.inf, 0.0]))
_thresholds = st.one_of(st.just(math.inf), st.floats(min_value=1e-3, max_value=1e6))


def _orders(**kwargs):
    return dict(skip_non_finite=kwargs["skip_non_finite"], skip_above=kwargs["skip_above"],
                clip_norm=kwargs["clip_norm"], in_skip_window=False, total=kwargs["total"],
                loss_finite=kwargs["loss_finite"], loss_scaled=False)


@settings(max_examples=300, deadline=None)
@given(total=_norms, skip_non_finite=st.booleans(), skip_above=_thresholds, clip_norm=_thresholds,
       loss_finite=st.booleans())
def test_on_host_numbers_it_is_the_cores_step_decision(**kwargs):
    ours = decide(HOST, **_orders(**kwargs))
    plan = Plan(skip_non_finite=kwargs["skip_non_finite"], skip_above=kwargs["skip_above"],
                clip_norm=kwargs["clip_norm"])
    core = step_decision(plan, math.isfinite(kwargs["total"]) and kwargs["loss_finite"], kwargs["total"], CLIP_EPS)
    assert (not ours.skip) == core.apply
    if core.apply:
        assert ours.scale == pytest.approx(core.clip_coef) and ours.clipped == (core.clip_coef < 1.0)


@settings(max_examples=60, deadline=None)
@given(total=_norms, skip_non_finite=st.booleans(), skip_above=_thresholds, clip_norm=_thresholds,
       loss_finite=st.booleans(), in_skip_window=st.booleans(), loss_scaled=st.booleans())
def test_on_tensors_it_answers_as_on_host_numbers(total, skip_non_finite, skip_above, clip_norm, loss_finite,
                                                  in_skip_window, loss_scaled):
    host = decide(HOST, skip_non_finite=skip_non_finite, skip_above=skip_above, clip_norm=clip_norm,
                  in_skip_window=in_skip_window, total=total, loss_finite=loss_finite, loss_scaled=loss_scaled)

    def scalar(value, dtype="float64"):  # float64 as the host's numbers, so no rounding tells them apart
        return ops.convert_to_tensor(value, dtype=dtype)

    graph = decide(ops, skip_non_finite=scalar(skip_non_finite, "bool"), skip_above=scalar(skip_above),
                   clip_norm=scalar(clip_norm), in_skip_window=scalar(in_skip_window, "bool"),
                   total=scalar(total), loss_finite=scalar(loss_finite, "bool"), loss_scaled=loss_scaled)
    for field in ("skip", "clipped", "recorded_skip"):
        assert bool(ops.convert_to_numpy(getattr(graph, field))) == bool(getattr(host, field)), field
    if host.clipped:
        assert float(ops.convert_to_numpy(graph.scale)) == pytest.approx(host.scale, rel=1e-5)
