"""The doctor on a healthy easy-then-hard curriculum (Bengio et al., "Curriculum Learning", ICML 2009: train on the
easier examples first, then switch to the harder ones): an MLP learns well-separated classes (blob spread 0.5), then
at step 400 of 1,000 the same classes with overlapping blobs (spread 1.5, a higher irreducible loss). The loss jumps
at the switch (0.03 -> 0.86) and falls again (0.53 over steps 450-500, 0.32 over the last 100 steps) without ever
climbing: the run is learning the new data, not diverging.

Today ``divergence`` reads the higher final level (11x the pre-switch best, more than a quarter of the progress
given back) as a climb that stayed up and calls it an error. On the coarse trend the loss has fallen from its
post-switch peak by only 0.27 of what it still stands above the best (the two finite-loss divergences of the dev
corpus, hf_gpt2_lr_climb and torch_so66143829_squared_features: 0.09 and 0.06), too thin a margin to call a rule,
so the check is marked ``xfail(strict=True)``: it fails the day the doctor tells the two apart.
"""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks.corpus.healthy._common import Batches, teacher_classification
from benchmarks.corpus.healthy._phased import PhasedBatches
from trainguard.core.findings import Severity
from trainguard.doctor.diagnose import diagnose_file

STEPS, SWITCH = 1000, 400


@pytest.fixture(scope="module")
def curriculum_log(tmp_path_factory):
    torch.manual_seed(0)
    easy = teacher_classification(3000, 16, 10, seed=7, spread=0.5)
    hard = teacher_classification(3000, 16, 10, seed=7, spread=1.5)
    model = nn.Sequential(nn.Linear(16, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = PhasedBatches([(0, Batches(easy, 64, seed=1)), (SWITCH, Batches(hard, 64, seed=2))])
    losses = []
    for _ in range(STEPS):
        x, y = (torch.from_numpy(a) for a in batches.next())
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    path = tmp_path_factory.mktemp("curriculum") / "metrics.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("step", "loss"), *enumerate(losses)])
    return path, np.array(losses)


def test_the_curriculum_run_learns_the_hard_data_down(curriculum_log):
    _, losses = curriculum_log
    jump = losses[SWITCH:SWITCH + 10].mean()
    assert jump > 10 * losses[SWITCH - 50:SWITCH].mean()  # a real jump at the switch
    assert losses[-100:].mean() < 0.5 * jump  # ... that the run learns down
    assert losses[-100:].mean() < np.log(10) / 5  # far below chance on the hard data


@pytest.mark.xfail(strict=True, reason="measured 2026-12-04: divergence (error) from step 389, best 0.028 -> 0.32 at the end")
def test_the_doctor_does_not_call_a_harder_data_switch_a_divergence(curriculum_log):
    path, _ = curriculum_log
    result = diagnose_file(path)
    serious = [f for f in result.findings if f.severity >= Severity.WARNING]
    assert not serious, [(f.code, f.severity.name, f.message) for f in serious]
