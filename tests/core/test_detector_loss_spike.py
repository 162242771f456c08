from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest

from _seed003 import seed003_stream
from trainguard.core.detectors import loss_spike
from trainguard.core.findings import Severity
from trainguard.core.detector import replay
from trainguard.core.stats import StepStats


def noisy(n, level=1.0, noise=0.1, seed=0):
    return level * (1.0 + noise * np.random.default_rng(seed).uniform(-1.0, 1.0, n))


def stream_of(losses, norms=None):
    norms = np.ones(len(losses)) if norms is None else norms
    return [StepStats(step=i, loss=float(l), grad_norm=None if g is None else float(g))
            for i, (l, g) in enumerate(zip(losses, norms))]


def test_docstring_example():
    module = importlib.import_module("trainguard.core.detectors.loss_spike")
    assert doctest.testmod(module).failed == 0


def test_an_isolated_spike_the_loss_recovers_from_is_info_not_led_by_the_gradient():
    losses = noisy(300)
    losses[200] = 3.0
    found, _ = replay(loss_spike(), stream_of(losses, noisy(300, seed=1)))
    assert len(found) == 1
    finding = found[0]
    # INFO (docs/severity.md): judged when the episode ends, three steps later, back at its level.
    assert (finding.code, finding.step, finding.severity) == ("loss_spike", 200, Severity.INFO)
    assert finding.evidence["outcome"] == "recovered" and finding.evidence["judged_at"] == 203
    assert finding.evidence["grad_norm_led"] is False
    assert finding.evidence["z"] >= 6
    assert finding.evidence["recent_level"] == pytest.approx(1.0, abs=0.05)
    assert finding.evidence["rise"] == pytest.approx(2.0, abs=0.15)


def test_a_gradient_spike_one_step_before_leads():
    losses, norms = noisy(300), noisy(300, seed=1)
    norms[199], losses[200] = 20.0, 3.0
    found, _ = replay(loss_spike(), stream_of(losses, norms))
    assert [(f.step, f.evidence["grad_norm_led"], f.evidence["grad_spike_step"]) for f in found] == [(200, True, 199)]


def test_a_gradient_spike_at_the_same_step_leads():
    losses, norms = noisy(300), noisy(300, seed=1)
    norms[200], losses[200] = 20.0, 3.0
    found, _ = replay(loss_spike(), stream_of(losses, norms))
    assert found[0].evidence["grad_norm_led"] is True


def test_a_gradient_spike_long_before_does_not_lead():
    losses, norms = noisy(300), noisy(300, seed=1)
    norms[150], losses[200] = 20.0, 3.0
    found, _ = replay(loss_spike(), stream_of(losses, norms))
    assert found[0].evidence["grad_norm_led"] is False


def test_without_gradient_norms_grad_norm_led_is_none():
    losses = noisy(300)
    losses[200] = 3.0
    found, _ = replay(loss_spike(), stream_of(losses, [None] * 300))
    assert found[0].evidence["grad_norm_led"] is None


def test_a_statistically_significant_but_small_bump_is_not_a_spike():
    losses = noisy(300, noise=0.005)
    losses[200] = 1.2  # z ~ 50 in this quiet run, but only 20% above the median
    found, _ = replay(loss_spike(), stream_of(losses))
    assert found == []


def test_nothing_before_min_history():
    losses = noisy(40)
    losses[15] = 5.0
    found, _ = replay(loss_spike(), stream_of(losses))
    assert found == []


def test_a_loss_that_stays_high_is_a_level_shift_warning_once():
    losses = np.concatenate([noisy(200), noisy(80, level=4.0, seed=1)])
    found, _ = replay(loss_spike(), stream_of(losses))
    assert [(f.step, f.severity, f.evidence["outcome"], f.evidence["judged_at"]) for f in found] == [
        (200, Severity.WARNING, "level_shift", 250)]


def test_a_jump_the_run_then_learns_down_from_is_info():
    # A curriculum switch: the loss jumps 10x, then falls steadily on the new data.
    losses = np.concatenate([noisy(200), 10.0 * np.exp(-np.arange(100) / 15.0) + noisy(100, seed=1)])
    found, _ = replay(loss_spike(), stream_of(losses))
    assert [(f.step, f.severity, f.evidence["outcome"]) for f in found] == [(200, Severity.INFO, "recovered")]


def test_the_third_large_spike_within_512_steps_is_a_repeated_spikes_warning():
    losses, _ = _decay_with_bad_batch(height=1.0, n=1000)
    for step in range(200, 328, 8):  # sixteen spikes back to the start, eight steps apart: one warning for them
        losses[step] = 2.0
    losses[900] = 2.0  # the window has cleared of spikes by then: an isolated one again
    found, _ = replay(loss_spike(), stream_of(losses))
    assert [(f.step, f.severity, f.evidence["outcome"]) for f in found] == [
        (200, Severity.INFO, "recovered"), (208, Severity.INFO, "recovered"), (216, Severity.WARNING, "repeated"),
        (900, Severity.INFO, "recovered")]
    assert found[2].evidence["spikes_in_window"] == 3


def _decay_with_bad_batch(height, every=150, first=150, n=900, seed=0):
    """A loss 2.0 -> ~0.02 with 10% noise, and one batch every ``every`` steps from ``first`` on ``height`` times
    the loss."""
    t = np.arange(n)
    losses = (0.02 + 1.98 * np.exp(-t / 80.0)) * (1.0 + 0.1 * np.random.default_rng(seed).uniform(-1.0, 1.0, n))
    bad = np.arange(first, n, every)
    losses[bad] *= height
    return losses, bad


def test_a_bad_sample_once_an_epoch_that_undoes_most_of_the_progress_is_repeated():
    # keras_fit_unstandardized_sample: the batch with the unstandardized sample returns each epoch, 85-95% of the
    # way back to the starting loss.
    losses, bad = _decay_with_bad_batch(height=80.0)
    found, _ = replay(loss_spike(), stream_of(losses))
    loud = [(f.step, f.evidence["outcome"]) for f in found if f.severity >= Severity.WARNING]
    assert loud == [(bad[2], "repeated")]
    assert found[2].evidence["progress_given_back"] > 0.5


def test_a_converged_runs_spikes_that_keep_most_of_the_progress_stay_info():
    # The fixed twin of keras_fit_sgd_lr_1e5: near 0, batches 500x the level, yet 7% of the way back to the start.
    losses, bad = _decay_with_bad_batch(height=4.0, every=40, first=400)
    found, _ = replay(loss_spike(), stream_of(losses))
    assert len(found) >= 6 and all(f.severity == Severity.INFO for f in found)
    assert all(f.evidence["progress_given_back"] < 0.5 for f in found)


def test_a_signed_loss_has_no_repeated_spikes():
    # A policy gradient's loss: around 0, either sign, with large returns now and then.
    losses = np.random.default_rng(4).normal(0.0, 1.0, 1000)
    losses[200:1000:60] = 40.0
    found, _ = replay(loss_spike(), stream_of(losses))
    assert found and all(f.severity == Severity.INFO for f in found)


def test_heavy_tailed_minibatch_losses_are_not_spikes():
    # A rare class in small batches: most batch losses are ~0, one in four carries a positive sample (~100x).
    rng = np.random.default_rng(3)
    losses = np.where(rng.uniform(size=3000) < 0.25, rng.lognormal(np.log(0.05), 1.0, 3000),
                      rng.lognormal(np.log(5e-4), 1.0, 3000))
    found, _ = replay(loss_spike(), stream_of(losses))
    assert all(f.severity == Severity.INFO for f in found)


def test_non_finite_losses_are_skipped_and_do_not_poison_the_window():
    losses = noisy(300)
    stream = stream_of(losses)
    stream[100] = StepStats(step=100, loss=float("nan"), grad_norm=float("nan"), loss_finite=False,
                            grads_finite=False)
    stream[101] = StepStats(step=101, loss=float("inf"), grad_norm=1.0, loss_finite=False)
    found, state = replay(loss_spike(), stream)
    assert found == []
    assert np.isfinite(state.rises.buffer).all() and np.isfinite(state.norms.buffer).all()
    assert np.isfinite(state.level_ema)


def test_a_spike_on_a_decreasing_loss_is_judged_against_its_recent_level():
    losses = np.exp(-np.arange(600) / 1000.0) * (1.0 + 0.1 * np.random.default_rng(2).uniform(-1, 1, 600))
    losses[400] = 0.9  # below the starting loss, yet 1.35x the loss around step 400
    losses[500] = 1.8  # 3x the loss around step 500
    found, _ = replay(loss_spike(), stream_of(losses))
    assert [f.step for f in found] == [500]
    assert found[0].evidence["recent_level"] == pytest.approx(np.exp(-0.5), rel=0.05)


def test_a_spike_early_in_a_fast_falling_loss_is_seen():
    # The loss falls 3x in 150 steps: a raw-loss window's MAD would hide this 4x spike (z ~ 4).
    losses = 3.0 ** (-np.arange(150) / 150.0)
    losses[130] *= 4.0
    found, _ = replay(loss_spike(), stream_of(losses))
    assert [f.step for f in found] == [130]


def test_negative_losses_are_judged_relative_to_their_magnitude():
    losses = -5.0 * noisy(300, noise=0.02)
    losses[200] = -1.0  # 80% of |level| above the level
    found, _ = replay(loss_spike(), stream_of(losses))
    assert [f.step for f in found] == [200]
    assert found[0].evidence["rise"] == pytest.approx(0.8, abs=0.05)


def test_seed003_healthy_twin_has_no_spike():
    found, _ = replay(loss_spike(), seed003_stream("healthy"))
    assert found == []
