"""Healthy runs raise nothing: property tests over synthetic healthy streams, the recorded healthy twin of seed 003,
and the purity of every detector's update."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _seed003 import seed003_stream
from trainguard.core.detectors import (default_detectors, divergence, exploding_gradient, loss_spike, non_finite,
                                       plateau, vanishing_gradient)
from trainguard.core.findings import Severity
from trainguard.core.detector import replay
from trainguard.core.stats import LayerStats, StepStats

LAYERS = ("conv.weight", "conv.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")


@st.composite
def healthy_runs(draw):
    """Parameters of a healthy run: a decreasing loss, its noise, its schedule, a few mild bumps."""
    return dict(
        seed=draw(st.integers(0, 2**32 - 1)),
        steps=draw(st.integers(150, 1500)),
        shape=draw(st.sampled_from(["exponential", "power_law", "floor"])),
        start_loss=draw(st.floats(0.05, 20.0)),
        decay=draw(st.floats(3.0, 1000.0)),  # start / end loss of the exponential
        exponent=draw(st.floats(0.3, 1.5)),  # power-law exponent
        noise=draw(st.floats(0.0, 0.3)),  # multiplicative, uniform in +-noise
        grad_noise=draw(st.floats(0.0, 0.3)),
        warmup=draw(st.floats(0.0, 0.1)),  # fraction of the run, linear from 0
        cosine=draw(st.booleans()),
        bumps=draw(st.integers(0, 3)),
        layer_every=draw(st.sampled_from([0, 1, 25])),
    )


def healthy_stream(p: dict) -> list[StepStats]:
    """A healthy run: the loss falls with the integrated learning rate, the gradient norm with the loss."""
    rng = np.random.default_rng(p["seed"])
    n = p["steps"]
    t = np.arange(n, dtype=np.float64)
    peak_lr = 1e-3
    warm = max(1.0, p["warmup"] * n)
    lr = peak_lr * np.minimum(1.0, t / warm)
    if p["cosine"]:
        lr *= 0.5 * (1.0 + np.cos(np.pi * t / n))
    progress = np.cumsum(lr) / (peak_lr * n)  # 0 -> at most 1
    if p["shape"] == "exponential":
        clean = p["start_loss"] * p["decay"] ** (-progress)
    elif p["shape"] == "power_law":
        clean = p["start_loss"] * (1.0 + 100.0 * progress) ** (-p["exponent"])
    else:  # exponential approach to an irreducible floor
        floor = p["start_loss"] / p["decay"] ** 0.5
        clean = floor + (p["start_loss"] - floor) * np.exp(-8.0 * progress)
    bump = np.ones(n)
    for _ in range(p["bumps"]):  # mild: at most +20% over 10-60 steps, raised-cosine shaped
        centre, width, height = rng.integers(0, n), rng.integers(10, 61), rng.uniform(0.02, 0.2)
        inside = np.abs(t - centre) < width / 2
        bump[inside] *= 1.0 + height * 0.5 * (1.0 + np.cos(2 * np.pi * (t[inside] - centre) / width))
    loss = clean * bump * (1.0 + p["noise"] * rng.uniform(-1.0, 1.0, n))
    grad_norm = (rng.uniform(0.1, 10.0) * (clean / p["start_loss"]) ** rng.uniform(0.2, 0.6) * bump
                 * (1.0 + p["grad_noise"] * rng.uniform(-1.0, 1.0, n)))
    shares = rng.uniform(0.1, 1.0, len(LAYERS))
    sizes = rng.integers(10, 100_000, len(LAYERS))
    stream = []
    for i in range(n):
        layers = ()
        if p["layer_every"] and i % p["layer_every"] == 0:
            norms = grad_norm[i] * shares * rng.uniform(0.7, 1.3, len(LAYERS))
            update = 1e-3 * (lr[i - 1] / peak_lr if i else 0.0) * rng.uniform(0.5, 2.0, len(LAYERS))
            layers = tuple(LayerStats(name, grad_norm=float(g), grad_abs_mean=float(g / math.sqrt(size)),
                                      weight_norm=1.0, update_ratio=float(u) if i else None)
                           for name, g, size, u in zip(LAYERS, norms, sizes, update))
        stream.append(StepStats(step=i, loss=float(loss[i]), grad_norm=float(grad_norm[i]), lrs=(float(lr[i]),),
                                layers=layers))
    return stream


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(healthy_runs())
def test_healthy_noisy_decreasing_runs_raise_no_warning(params):
    loud = [f for f in replay(default_detectors(), healthy_stream(params))[0] if f.severity >= Severity.WARNING]
    assert loud == [], [f.message for f in loud]


@pytest.mark.parametrize("layer_every", [1, 25])
def test_seed003_healthy_twin_raises_nothing_in_100_epochs(layer_every):
    stream = seed003_stream("healthy", layer_every=layer_every)
    assert len(stream) == 1600
    assert [f.message for f in replay(default_detectors(), stream)[0]] == []


def _same(a, b) -> bool:
    """Deep equality of detector states: NamedTuples, tuples, numpy buffers, NaN equal to NaN."""
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and np.array_equal(a, b, equal_nan=True)
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


def _snapshot(state):
    if isinstance(state, np.ndarray):
        return state.copy()
    if isinstance(state, tuple):
        return type(state)(*map(_snapshot, state)) if hasattr(state, "_fields") else tuple(map(_snapshot, state))
    return state


@pytest.mark.parametrize("factory", [non_finite, exploding_gradient, vanishing_gradient, loss_spike, divergence,
                                     plateau])
def test_update_never_mutates_the_state_passed_in(factory):
    params = dict(seed=3, steps=400, shape="exponential", start_loss=2.0, decay=50.0, exponent=1.0, noise=0.2,
                  grad_noise=0.2, warmup=0.05, cosine=True, bumps=2, layer_every=5)
    # A healthy run with a 6-step blow-up, a stuck stretch with a vanishing first layer, then seed 003's explosion.
    stream = [StepStats(step=s.step, loss=s.loss * (30.0 if 200 <= s.step < 206 else 1.0),
                        grad_norm=s.grad_norm * (30.0 if 200 <= s.step < 206 else 1.0), lrs=s.lrs, layers=s.layers)
              for s in healthy_stream(params)]
    stuck = (LayerStats("fc1.weight", grad_norm=1e-6, grad_abs_mean=1e-9, update_ratio=1e-9),
             LayerStats("fc2.weight", grad_norm=1e-2, grad_abs_mean=1e-4, update_ratio=1e-3))
    stream += [StepStats(step=400 + i, loss=0.5, grad_norm=1e-2, lrs=(1e-3,), layers=stuck) for i in range(700)]
    stream += [StepStats(step=1100 + s.step, loss=s.loss, grad_norm=s.grad_norm, lrs=s.lrs, layers=s.layers,
                         loss_finite=s.loss_finite, grads_finite=s.grads_finite) for s in seed003_stream("exploding")]
    detector = factory()
    state = detector.init()
    reported = []
    for stats in stream:
        before = _snapshot(state)
        found, new_state = detector.update(stats, state)
        assert _same(state, before), f"{detector.name} mutated its state at step {stats.step}"
        reported.extend(found)
        state = new_state
    assert reported  # the stream exercised the reporting paths too
    if factory is not non_finite:  # whose evidence carries the non-finite loss itself
        for finding in reported:  # the numbers a finding carries are plain, finite JSON
            json.dumps(finding.to_dict(), allow_nan=False)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(healthy_runs(), st.floats(0.3, 0.9), st.floats(4.0, 50.0))
def test_the_same_runs_with_a_loss_spike_injected_do_raise_it(params, where, height):
    """The property above is not vacuous: the detectors do see a spike in these runs."""
    stream = healthy_stream(params)
    at = max(130, int(where * len(stream)))
    if at >= len(stream):
        return
    spiked = stream[at]
    stream[at] = StepStats(step=at, loss=spiked.loss * height, grad_norm=spiked.grad_norm, lrs=spiked.lrs,
                           layers=spiked.layers)
    spikes = [f for f in replay(default_detectors(), stream)[0] if f.code == "loss_spike"]
    assert [f.step for f in spikes] == [at]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(healthy_runs(), st.floats(0.3, 0.9))
def test_the_same_runs_with_an_explosion_injected_do_raise_it(params, where):
    stream = healthy_stream(params)
    at = max(130, int(where * len(stream)))
    if at + 4 >= len(stream):
        return
    for k in range(4):  # the gradient norm grows 4x a step and the loss follows
        s = stream[at + k]
        stream[at + k] = StepStats(step=s.step, loss=s.loss * 2 ** (k + 1), grad_norm=s.grad_norm * 4 ** (k + 1),
                                   lrs=s.lrs, layers=s.layers)
    exploding = [f for f in replay(default_detectors(), stream)[0] if f.code == "exploding_gradient"]
    assert exploding and at <= exploding[0].step <= at + 2
