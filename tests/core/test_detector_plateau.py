from __future__ import annotations

import doctest
import importlib

import numpy as np

from _seed003 import seed003_stream
from trainguard.core.detectors import plateau
from trainguard.core.findings import Severity
from trainguard.core.detector import replay
from trainguard.core.stats import LayerStats, StepStats


def run(detector, losses):
    return replay(detector, [StepStats(step=step, loss=float(loss)) for step, loss in enumerate(losses)])[0]


def noise(n, amount=0.05, seed=0):
    return 1.0 + amount * np.random.default_rng(seed).uniform(-1.0, 1.0, n)


def test_docstring_example():
    module = importlib.import_module("trainguard.core.detectors.plateau")
    assert doctest.testmod(module).failed == 0


def test_stuck_from_the_start_is_a_warning_once_the_window_has_passed():
    found = run(plateau(), 2.3 * noise(1000))
    assert len(found) == 1
    finding = found[0]
    assert finding.severity == Severity.WARNING
    assert 249 <= finding.step <= 270  # the start takes 20 losses and a half-life (50), then the window 200 steps
    assert finding.evidence["fraction_of_start"] > 0.9
    assert finding.where is None


def test_a_plateau_after_real_progress_is_info():
    losses = np.concatenate([np.geomspace(2.3, 0.8, 300), np.full(500, 0.8)]) * noise(800)
    found = run(plateau(), losses)
    assert [f.severity for f in found] == [Severity.INFO]
    assert 500 <= found[0].step <= 800  # the window (200) plus the smoothed loss settling on the new level
    assert 0.3 < found[0].evidence["fraction_of_start"] < 0.4


def test_a_converged_run_with_a_flat_tail_raises_nothing():
    losses = np.concatenate([np.geomspace(2.3, 0.01, 400), np.full(1000, 0.01)]) * noise(1400, 0.3)
    assert run(plateau(), losses) == []


def test_a_slow_but_steady_decrease_is_not_a_plateau():
    # 3% per 200 steps: slow, still learning.
    losses = 2.3 * np.exp(-0.03 * np.arange(2000) / 200) * noise(2000, 0.02)
    assert run(plateau(), losses) == []


def test_a_new_plateau_after_a_clear_drop_fires_again():
    losses = np.concatenate([np.full(400, 2.3), np.geomspace(2.3, 1.0, 100), np.full(700, 1.0)]) * noise(1200)
    found = run(plateau(), losses)
    assert [f.severity for f in found] == [Severity.WARNING, Severity.INFO]
    assert found[1].step > 500


def test_a_lone_spike_on_a_decreasing_loss_does_not_make_a_plateau():
    losses = 2.3 * np.exp(-np.arange(1000) / 150.0) + 0.2
    losses[[300, 301, 600]] = 50.0
    assert run(plateau(), losses) == []


def test_non_finite_losses_are_skipped():
    losses = 2.3 * np.exp(-np.arange(600) / 100.0)
    losses[100:110] = np.nan
    losses[200] = np.inf
    assert run(plateau(), losses) == []


def test_seed003_healthy_twin_is_converged_not_on_a_plateau():
    detector, state = plateau(), plateau().init()
    for stats in seed003_stream("healthy"):
        found, state = detector.update(stats, state)
        assert found == ()


def _with_updates(losses, update_ratio, every=25):
    layers = (LayerStats("g.weight", update_ratio=update_ratio), LayerStats("d.weight", update_ratio=update_ratio))
    return [StepStats(step=i, loss=float(l), layers=layers if i % every == 0 else ()) for i, l in enumerate(losses)]


def test_a_stall_at_the_start_while_the_weights_move_is_info_and_with_still_weights_a_warning():
    # A GAN's loss stays at its start while both networks learn (update ratio ~2e-3, measured); a learning rate far
    # too low or dead units leave the weights still (update ratio < 1e-4).
    losses = 0.69 * noise(1000)
    moving, _ = replay(plateau(), _with_updates(losses, 2e-3))
    still, _ = replay(plateau(), _with_updates(losses, 1e-6))
    assert [(f.severity, f.evidence["update_ratio"]) for f in moving] == [(Severity.INFO, 2e-3)]
    assert [f.severity for f in still] == [Severity.WARNING]


def test_a_window_across_a_learning_rate_rise_is_not_judged():
    # SGDR: the LR jumps back up every 150 steps: no window of 200 steps is free of a restart.
    t = np.arange(1000)
    lrs = 0.1 * 0.5 * (1 + np.cos(np.pi * (t % 150) / 150))
    losses = 2.3 * noise(1000)
    found, _ = replay(plateau(), [StepStats(step=i, loss=float(l), lrs=(float(r),)) for i, (l, r) in
                                  enumerate(zip(losses, lrs))])
    assert found == []
