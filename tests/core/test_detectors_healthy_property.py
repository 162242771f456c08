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

SYMPTOMS = ("non_finite", "exploding_gradient", "vanishing_gradient", "loss_spike", "divergence", "plateau")
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


@st.composite
def heavy_tailed_runs(draw):
    """What the healthy runs of docs/severity.md show beyond smooth noise: isolated high-loss batches (label noise,
    a rare class in a small batch), a data switch the run then learns, warm restarts of the learning rate."""
    return dict(
        base=draw(healthy_runs()),
        # Fraction of steps with a high-loss batch: none, or the many of label noise in small batches. A kind of
        # batch 1.5-4x above the rest on 2-5% of steps reads as repeated spikes (docs/severity.md, known limits).
        bad_batches=draw(st.one_of(st.just(0.0), st.floats(0.1, 0.3))),
        bad_factor=draw(st.floats(2.0, 8.0)),  # how far above the level such a batch's loss is, at most
        switch=draw(st.one_of(st.none(), st.floats(0.3, 0.8))),  # where a curriculum switch happens
        switch_jump=draw(st.floats(2.0, 50.0)),
        restarts=draw(st.integers(0, 3)),  # SGDR: the learning rate jumps back to its peak
    )


def heavy_tailed_stream(p: dict) -> list[StepStats]:
    stream = healthy_stream(p["base"])
    n = len(stream)
    rng = np.random.default_rng(p["base"]["seed"] + 1)
    loss = np.array([s.loss for s in stream])
    grad = np.array([s.grad_norm for s in stream])
    lr = np.array([s.lr for s in stream])
    bad = rng.uniform(size=n) < p["bad_batches"]
    # Runs with bad batches are noisy runs (small batches): at least 5% of batch-to-batch noise besides.
    factor = np.where(bad, rng.uniform(1.5, p["bad_factor"], n), 1.0) * (1.0 + 0.05 * rng.uniform(-1.0, 1.0, n))
    loss, grad = loss * factor, grad * np.sqrt(factor)
    if p["switch"] is not None:  # new data: the loss jumps, then is learned down over ~100 steps
        at = int(p["switch"] * n)
        t = np.arange(n - at)
        loss[at:] *= 1.0 + (p["switch_jump"] - 1.0) * np.exp(-t / 40.0)
        grad[at:] *= 1.0 + (np.sqrt(p["switch_jump"]) - 1.0) * np.exp(-t / 40.0)
    for k in range(p["restarts"]):  # the LR jumps back up; the loss rises 1.5-3x, then falls again
        at = int((k + 1) * n / (p["restarts"] + 1))
        t = np.arange(n - at)
        lr[at:] = lr[at:] * (1.0 + 9.0 * np.exp(-t / 60.0))
        loss[at:] *= 1.0 + rng.uniform(0.5, 2.0) * (t / 10.0) * np.exp(1.0 - t / 10.0) * (t < 100)
    return [StepStats(step=s.step, loss=float(l), grad_norm=float(g), lrs=(float(r),), layers=s.layers)
            for s, l, g, r in zip(stream, loss, grad, lr)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(heavy_tailed_runs())
def test_heavy_tailed_healthy_runs_raise_no_warning(params):
    loud = [f for f in replay(default_detectors(), heavy_tailed_stream(params))[0]
            if f.severity >= Severity.WARNING and f.code in SYMPTOMS]
    assert loud == [], [f.message for f in loud]


def test_bad_batches_riding_on_a_switch_to_harder_data_are_not_repeated_spikes():
    """Found by the property above: 25% of batches up to 5x the rest, and new data 8x harder at step 248. Until the
    level catches up with the switch, its bad batches are spikes that each undo most of the progress; they belong
    to the switch's episode, not to a repetition."""
    params = {"base": {"seed": 162, "steps": 397, "shape": "exponential", "start_loss": 1.0, "decay": 46.0,
                       "exponent": 1.0, "noise": 0.0, "grad_noise": 0.0, "warmup": 0.0, "cosine": False, "bumps": 0,
                       "layer_every": 0},
              "bad_batches": 0.25, "bad_factor": 5.0, "switch": 0.625, "switch_jump": 8.0, "restarts": 0}
    found = replay(default_detectors(), heavy_tailed_stream(params))[0]
    assert [f.message for f in found if f.severity >= Severity.WARNING and f.code in SYMPTOMS] == []
    assert [f.step for f in found if f.code == "loss_spike"][:1] == [248]  # the switch itself is seen


def test_warm_restarts_and_a_switch_in_a_run_with_little_progress_are_not_repeated_spikes():
    """Found by drawing 600 more runs of the property above: a loss that falls only 3.2x, two warm restarts and a
    28x switch. Each undoes more than half of that little progress; the schedule or new data explains each."""
    params = {"base": {"seed": 3295897417, "steps": 1197, "shape": "exponential", "start_loss": 17.14,
                       "decay": 3.19, "exponent": 1.06, "noise": 0.09, "grad_noise": 0.19, "warmup": 0.025,
                       "cosine": False, "bumps": 0, "layer_every": 1},
              "bad_batches": 0.0, "bad_factor": 3.12, "switch": 0.741, "switch_jump": 28.38, "restarts": 2}
    found = replay(default_detectors(), heavy_tailed_stream(params))[0]
    assert [f.message for f in found if f.severity >= Severity.WARNING and f.code in SYMPTOMS] == []
    assert len([f for f in found if f.code == "loss_spike"]) >= 3  # the restarts and the switch are seen


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


# derandomize: a fixed draw, so that a miss this property finds cannot fail CI at random
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
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


def test_a_4x_spike_late_in_a_fast_noiseless_decay_is_raised():
    """Found by the property below: the level's EMA lags a loss falling 4.6% a step, so this 4x spike rose only
    0.87 above it (z 5.9997 < 6). The level is now corrected for its lag (Brown's double smoothing)."""
    params = {"seed": 0, "steps": 150, "shape": "exponential", "start_loss": 1.0, "decay": 902.0, "exponent": 1.0,
              "noise": 0.0, "grad_noise": 0.0, "warmup": 0.0625, "cosine": False, "bumps": 0, "layer_every": 0}
    stream = healthy_stream(params)
    spiked = stream[130]
    stream[130] = StepStats(step=130, loss=spiked.loss * 4.0, grad_norm=spiked.grad_norm, lrs=spiked.lrs,
                            layers=spiked.layers)
    spikes = [f for f in replay(default_detectors(), stream)[0] if f.code == "loss_spike"]
    assert [f.step for f in spikes] == [130]


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


@pytest.mark.xfail(strict=True, reason="the diverged rule's known limit (docs/severity.md): a bad batch, a 13x "
                                       "switch and a bad batch on it read as a 3-step climb (ERROR at step 189)")
def test_a_bad_batch_a_switch_and_a_bad_batch_on_it_are_no_climb():
    # The draw hypothesis found (a random run of this test, 2026-12-04); CI draws fixed examples since.
    base = dict(seed=2868, steps=320, shape="exponential", start_loss=1.0, decay=3.0, exponent=1.0, noise=0.0,
                grad_noise=0.0, warmup=0.0, cosine=False, bumps=2, layer_every=0)
    params = dict(base=base, bad_batches=0.296875, bad_factor=4.0, switch=0.58984375, switch_jump=13.0, restarts=0)
    loud = [f for f in replay(default_detectors(), heavy_tailed_stream(params))[0]
            if f.severity >= Severity.WARNING and f.code in SYMPTOMS]
    assert loud == [], [f.message for f in loud]
