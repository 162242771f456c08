"""The doctor's ``divergence`` on a loss that jumps and is then learned down (a change of data: a harder
curriculum stage, Bengio et al. 2009) versus one that climbs and stays up. Synthetic CSV logs, read as a user's."""
from __future__ import annotations

import csv

import numpy as np

from trainguard.doctor.analysis.divergence import analyse_divergence
from trainguard.doctor.analysis.signals import Signals
from trainguard.doctor.readers import read_run


def _divergence(tmp_path, losses):
    path = tmp_path / "metrics.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("step", "loss"), *enumerate(losses.tolist())])
    return analyse_divergence(Signals(read_run(path)))


def _run(after: np.ndarray, seed: int = 0) -> np.ndarray:
    """400 steps from 2.3 down to ~0.03, then ``after`` (the data changed at step 400), 15% batch noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(400)
    losses = np.concatenate([0.03 + 2.27 * np.exp(-t / 40.0), after])
    return losses * (1.0 + 0.15 * rng.uniform(-1.0, 1.0, len(losses)))


def test_a_harder_stage_learned_down_is_no_divergence(tmp_path):
    t = np.arange(600)
    assert _divergence(tmp_path, _run(0.30 + 0.55 * np.exp(-t / 200.0))) == []  # ends at 0.32, 10x the best


def test_a_climb_that_stays_up_is_still_a_divergence(tmp_path):
    t = np.arange(600)
    (found,) = _divergence(tmp_path, _run(0.45 + 0.4 * np.exp(-t / 3.0)))  # down a little at once, then flat
    assert found.code == "divergence" and found.evidence["onset_step"] < 420


def test_a_late_climb_is_still_a_divergence(tmp_path):
    # an LR too high for the converged run: the loss climbs over the last fifth and is nowhere near coming down
    t = np.arange(150)
    assert _divergence(tmp_path, _run(np.concatenate([np.full(450, 0.03), 0.03 * np.exp(t / 40.0)])))
