from __future__ import annotations

import doctest
import importlib

import numpy as np

from _seed003 import seed003_stream
from trainguard.core.detectors import plateau
from trainguard.core.findings import Severity
from trainguard.core.detector import replay
from trainguard.core.stats import StepStats


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
