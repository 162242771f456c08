"""Dead or saturated hidden units that persist are a cause even when the loss still falls: capacity the run lost
(Glorot & Bengio 2010; LeCun et al. 1998, "Efficient BackProp", sec. 4.4; Karpathy's makemore part 3). Real small
runs: a tanh MLP written with ``torch.tanh`` in its forward, its hidden layer saturated by a unit-variance
initialization, learns and is diagnosed ``saturated_activation``; its twin with the Kaiming gain for tanh gets no
cause. Synthetic streams: a layer saturated or dead on most samples is a cause, one that recovers is not, and a
look-alike's evidence keeps the diagnosis as before."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest

from _diag_streams import healthy
from trainguard.core.diagnosis import diagnose
from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import ActivationStats, TensorSummary

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import trainguard  # noqa: E402

INPUTS, HIDDEN, STEPS = 32, 128, 300


class TanhMLP(nn.Module):
    def __init__(self, gain: float):
        super().__init__()
        self.hidden = nn.Linear(INPUTS, HIDDEN)
        self.out = nn.Linear(HIDDEN, 1)
        with torch.no_grad():
            self.hidden.weight.normal_(0.0, 1.0).mul_(gain)  # gain 1: pre-activations of std ~5.7
            self.out.weight.mul_(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.hidden(x)))


def _train(gain: float):
    torch.manual_seed(0)
    model = TanhMLP(gain)
    teacher = torch.randn(INPUTS, generator=torch.Generator().manual_seed(1)) / math.sqrt(INPUTS)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    guard = trainguard.Guard(model, optimizer, policy="observe")
    data = torch.Generator().manual_seed(2)
    losses = []
    for _ in range(STEPS):
        x = torch.randn(64, INPUTS, generator=data)
        y = (x @ teacher).unsqueeze(1)
        loss = F.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        guard.step(loss, inputs=x, targets=y)
        losses.append(loss.item())
    guard.close()
    return guard, losses


def test_a_tanh_layer_saturated_from_its_initialization_that_learns_is_saturated_activation():
    guard, losses = _train(gain=1.0)
    assert sum(losses[-20:]) < 0.7 * sum(losses[:20])  # it learns: no stall, no instability
    causes = guard.diagnose()
    assert causes[0].code == "saturated_activation" and causes[0].confidence == 0.6
    assert list(causes[0].evidence["layers"]) == ["hidden->tanh"]
    assert causes[0].evidence["held_on_share_of_samples"]["hidden->tanh"] >= 0.5


def test_its_twin_with_the_kaiming_gain_for_tanh_has_no_cause_and_learns_better():
    guard, losses = _train(gain=(5 / 3) / math.sqrt(INPUTS))
    assert guard.diagnose() == []
    _, saturated = _train(gain=1.0)
    assert sum(losses[-20:]) < 0.5 * sum(saturated[-20:])  # the capacity the saturated run lost


def _hidden(stats, kind: str, value):
    """A hidden layer before the stream's own activations; ``value(i)`` its fraction on the i-th sample."""
    field = "dead_fraction" if kind == "relu" else "saturated_fraction"
    out, i = [], 0
    for s in stats:
        if s.activations:
            s = replace(s, activations=(ActivationStats("h", kind, **{field: value(i)}),) + s.activations)
            i += 1
        out.append(s)
    return out


def _warning(code: str, threshold: float):
    return [Finding(code, Severity.WARNING, 10, "h", {"threshold": threshold}, code)]


@pytest.mark.parametrize("kind,code,threshold,held", [("tanh", "saturated_activation", 0.5, 0.7),
                                                      ("relu", "dead_relu", 0.95, 1.0)])
def test_a_layer_that_stays_saturated_or_dead_is_a_cause_and_one_that_recovers_is_not(kind, code, threshold, held):
    samples = sum(1 for s in healthy() if s.activations)
    stays = diagnose(_hidden(healthy(), kind, lambda i: held), _warning(code, threshold))
    assert stays[0].code == code and stays[0].confidence == 0.6
    recovers = _hidden(healthy(), kind, lambda i: held if i < samples // 3 else 0.2)
    assert diagnose(recovers, _warning(code, threshold)) == []


def test_a_look_alikes_evidence_keeps_the_diagnosis_as_before():
    saturated = _hidden(healthy(), "tanh", lambda i: 0.7)
    off_scale = [replace(s, inputs=TensorSummary(mean=40.0, std=25.0, abs_max=120.0)) for s in saturated]
    assert "saturated_activation" not in [c.code for c in diagnose(off_scale, _warning("saturated_activation", 0.5))]
    eval_mode = _warning("saturated_activation", 0.5) + [
        Finding("eval_mode_modules", Severity.WARNING, 5, "bn", {"modules": ["bn"], "count": 1}, "eval")]
    assert [c.code for c in diagnose(saturated, eval_mode)][:1] == ["bn_inference_mode"]
