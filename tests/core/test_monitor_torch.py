"""Containment per detector in a real guarded torch run: a detector that raises at step 5 is switched off alone,
and the others still report the NaN that comes later."""
from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")

import trainguard  # noqa: E402
from trainguard.core.detector import Detector, chain  # noqa: E402
from trainguard.core.detectors import default_detectors  # noqa: E402


def raises_at_step_5() -> Detector:
    def update(stats, state):
        if stats.step == 5:
            raise ZeroDivisionError("norm / median")
        return (), state
    return Detector("raises_at_5", lambda: None, update)


def test_a_detector_that_raises_at_step_5_leaves_the_others_to_report_a_later_non_finite():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        guard = trainguard.Guard(model, opt, policy="observe", detectors=chain(raises_at_step_5(), default_detectors()))
        for step in range(20):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x[step % 4::4]), y[step % 4::4])
            if step == 12:
                loss = loss * float("nan")
            loss.backward()
            guard.step(loss, batch_size=16)
        guard.close()
    codes = [(f.code, f.step) for f in guard.findings]
    assert ("guard_internal_error", 5) in codes and ("non_finite", 12) in codes
    internal = next(f for f in guard.findings if f.code == "guard_internal_error")
    assert internal.evidence["detector"] == "raises_at_5" and "ZeroDivisionError: norm / median" in internal.message
    assert sum("raises_at_5" in str(w.message) for w in caught) == 1
    assert guard.monitor.disabled == ["raises_at_5"]
