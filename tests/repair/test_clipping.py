"""Properties of the clipping math (numpy), after optax's tests: clip at 1/i gives norm 1/i, clipping again
changes nothing, AGC bounds each unit."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainguard.core.policies.clipping import (
    autoclip_threshold, clip_by_global_norm, clip_by_value, ema_push, ema_stats, global_norm, unitwise_clip,
    unitwise_norm, zclip_threshold,
)

seeds = st.integers(0, 2**31 - 1)


def _arrays(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) * 10 for shape in [(3, 4), (4,), (2, 3, 3)]]


@settings(max_examples=40, deadline=None)
@given(seeds, st.integers(1, 50))
def test_clip_by_global_norm_at_one_over_i_gives_norm_one_over_i(seed, i):
    arrays = _arrays(seed)
    clipped = clip_by_global_norm(arrays, 1.0 / i)
    assert global_norm(clipped) == pytest.approx(1.0 / i, rel=1e-5)
    again = clip_by_global_norm(clipped, 1.0 / i)
    assert all(np.allclose(a, b, rtol=1e-12, atol=0) for a, b in zip(again, clipped))
    # direction kept: every entry scaled by the same factor
    ratios = np.concatenate([(c / a).ravel() for c, a in zip(clipped, arrays)])
    assert np.allclose(ratios, ratios[0])


@settings(max_examples=30, deadline=None)
@given(seeds)
def test_clip_by_global_norm_leaves_small_gradients_bitwise(seed):
    arrays = _arrays(seed)
    out = clip_by_global_norm(arrays, global_norm(arrays) * 2)
    assert all(np.array_equal(a, b) for a, b in zip(arrays, out))


@settings(max_examples=30, deadline=None)
@given(seeds, st.floats(0.01, 5.0))
def test_clip_by_value_bounds_every_entry_and_is_idempotent(seed, value):
    clipped = clip_by_value(_arrays(seed), value)
    assert all(np.abs(a).max() <= value for a in clipped)
    assert all(np.array_equal(a, b) for a, b in zip(clip_by_value(clipped, value), clipped))


@settings(max_examples=40, deadline=None)
@given(seeds, st.floats(1e-3, 0.5))
def test_unitwise_clip_bounds_each_unit_by_its_weight_norm(seed, clipping):
    rng = np.random.default_rng(seed)
    for shape in [(5, 3), (4, 2, 3, 3), (6,)]:
        param = rng.standard_normal(shape)
        grad = rng.standard_normal(shape) * 100
        out = unitwise_clip(grad, param, clipping)
        bound = clipping * np.maximum(unitwise_norm(param), 1e-3)
        assert np.all(unitwise_norm(out) <= bound * (1 + 1e-6))
        assert np.allclose(unitwise_clip(out, param, clipping), out, rtol=1e-6)


def test_unitwise_clip_leaves_units_under_the_bound_alone():
    param = np.array([[3.0, 4.0], [0.0, 1.0]])
    grad = np.array([[0.01, 0.0], [5.0, 0.0]])
    out = unitwise_clip(grad, param, clipping=0.1)
    assert np.array_equal(out[0], grad[0])  # 0.01 <= 0.1 * 5
    assert np.linalg.norm(out[1]) == pytest.approx(0.1)  # clipped to 0.1 * ||[0, 1]||


def test_unitwise_norm_shapes():
    assert unitwise_norm(np.ones((2, 3, 4))).shape == (2, 1, 1)
    assert np.array_equal(unitwise_norm(np.array([-2.0, 3.0])), np.array([2.0, 3.0]))


def test_autoclip_threshold_is_the_percentile_of_history():
    history = np.arange(1.0, 101.0)
    assert autoclip_threshold(history, 10.0) == pytest.approx(np.percentile(history, 10.0))
    assert autoclip_threshold(np.array([]), 10.0) == float("inf")


@settings(max_examples=30, deadline=None)
@given(seeds)
def test_ema_warmup_gives_plain_mean_and_variance(seed):
    xs = np.random.default_rng(seed).lognormal(size=25)
    s = ema_stats()
    for x in xs:
        s = ema_push(s, float(x), warmup=25)
    assert s.mean == pytest.approx(xs.mean())
    assert s.var == pytest.approx(xs.var())
    assert zclip_threshold(s, 2.0, 25) == pytest.approx(xs.mean() + 2 * xs.std())
    assert zclip_threshold(ema_stats(), 2.0, 25) == float("inf")
