"""``detectors.first_update``: Adam's first update as large as the weights and the loss rising after it is a
live WARNING (the harm shows from the fourth step on, not at the end of the run); ordinary first updates, a
first step the loss improves on, and an underflowed second moment stay quiet."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest

from _diag_streams import healthy
from trainguard.core.detector import replay
from trainguard.core.detectors import default_detectors
from trainguard.core.detectors.first_update import first_update
from trainguard.core.findings import Severity


def _adam(first_ratio, first_rms=1.0, rise=2.0, n=60):
    """Adam's statistics: steady update RMS 0.3; the first update ``first_ratio`` of every weight tensor; the
    losses of steps 1..40 ``rise`` times the healthy ones."""
    out = []
    for s in healthy(n):
        layers = tuple(replace(l, adam_update_rms=first_rms if s.step == 0 else 0.3,
                               update_ratio=first_ratio * math.exp(0.1 * i) if s.step == 0 else 1e-3)
                       for i, l in enumerate(s.layers))
        out.append(replace(s, layers=layers, loss=s.loss * rise if 1 <= s.step <= 40 else s.loss))
    return out


def _found(stats):
    return [f for f in replay(first_update(), stats)[0]]


def test_a_first_update_as_large_as_the_weights_with_a_rising_loss_is_a_warning_at_the_fourth_step():
    found = _found(_adam(first_ratio=10.0))
    assert [(f.code, f.step, f.severity) for f in found] == [("large_first_update", 3, Severity.WARNING)]
    assert found[0].evidence["median_update_ratio"] == pytest.approx(10.0 * math.exp(0.2), rel=0.1)


def test_the_default_detectors_raise_it_live():
    assert "large_first_update" in [f.code for f in replay(default_detectors(), _adam(first_ratio=10.0))[0]]


@pytest.mark.parametrize("why, stats", [
    ("an ordinary first update (the healthy corpus' largest is 0.34)", _adam(first_ratio=0.34)),
    ("the loss improved after the first update", _adam(first_ratio=10.0, rise=0.8)),
    ("an RMS far above Adam's bound of 1: an underflowed second moment", _adam(first_ratio=10.0, first_rms=1.4e4)),
])
def test_quiet(why, stats):
    assert _found(stats) == [], why


def test_a_non_finite_loss_right_after_the_first_update_fires_at_once():
    stats = _adam(first_ratio=10.0)
    stats = [replace(s, loss=math.nan, loss_finite=False) if s.step >= 1 else s for s in stats]
    found = _found(stats)
    assert [(f.step, f.evidence["went_non_finite"]) for f in found] == [(1, True)]


def test_sgd_has_no_first_update_finding():
    # SGD's first update is lr * g: a huge gradient makes it large at any learning rate.
    stats = [replace(s, layers=tuple(replace(l, update_ratio=10.0) for l in s.layers)) if s.step == 0 else s
             for s in healthy(60)]
    assert _found(stats) == []


def test_a_real_adam_run_at_lr_1_warns_live_and_at_1e_3_not():
    torch = pytest.importorskip("torch")
    from torch import nn

    import trainguard

    torch.manual_seed(0)
    x = torch.randn(256, 16)
    y = (x[:, :3].argmax(1)).long()

    def run(lr):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        guard = trainguard.Guard(model, optimizer, policy="observe")
        found = []
        for step in range(12):
            idx = torch.arange(step * 16, step * 16 + 32) % 256
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            found += guard.step(loss)
        found += guard.flush()
        guard.close()
        return [(f.code, f.severity) for f in found if f.code == "large_first_update"]

    assert run(1.0) == [("large_first_update", Severity.WARNING)]
    assert run(1e-3) == []
