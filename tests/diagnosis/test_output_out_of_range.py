"""A sigmoid/tanh output regressing targets outside its range (LeCun et al. 1998, "Efficient BackProp", sec. 4.5;
Stack Overflow 62641394 and 77588498): a real torch run gets the live ``output_out_of_range`` WARNING and the
diagnosis names ``saturated_activation`` with confidence, over ``unscaled_data`` when the targets are also far off
unit scale; the in-range twin, a BCE classifier and a linear output get neither."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import trainguard  # noqa: E402
from trainguard.core.findings import Severity  # noqa: E402


def _train(targets: str, output: type[nn.Module], criterion=nn.functional.mse_loss, steps: int = 120):
    """MLP 4 -> 16 (ReLU) -> 1 -> ``output`` on x ~ U[0, 1]^4, Adam 1e-2, batch 32; ``targets``: "out" y = 2 sum(x)
    + 1 in [1, 9], "large" the same x100, "in" sum(x) / 4 in [0, 1], "labels" 0/1 (sum(x) > 2), "signed"
    sin(sum(x) - 2) in [-1, 1]. Returns the findings at warning or above, the causes, the last loss."""
    torch.manual_seed(0)
    x = torch.rand(512, 4)
    s = x.sum(1, keepdim=True)
    y = {"out": 2 * s + 1, "large": 100 * (2 * s + 1), "in": s / 4, "labels": (s > 2).float(),
         "signed": torch.sin(s - 2)}[targets]
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1), output())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    guard = trainguard.Guard(model, opt, policy="observe")
    for step in range(steps):
        idx = torch.arange(step * 32, step * 32 + 32) % 512
        opt.zero_grad()
        loss = criterion(model(x[idx]), y[idx])
        loss.backward()
        guard.step(loss, inputs=x[idx], targets=y[idx])
    guard.flush()
    causes = guard.diagnose()
    guard.close()
    return [f for f in guard.findings if f.severity >= Severity.WARNING], causes, loss.item()


@pytest.mark.parametrize("output, targets", [(nn.Sigmoid, "out"), (nn.Tanh, "out"), (nn.Sigmoid, "large")])
def test_a_bounded_output_that_cannot_reach_the_targets_warns_and_is_diagnosed(output, targets):
    loud, causes, last = _train(targets, output)
    found = [f for f in loud if f.code == "output_out_of_range"]
    assert [f.severity for f in found] == [Severity.WARNING] and found[0].step <= 50
    assert found[0].evidence["activation"] == output.__name__.lower()
    assert causes and causes[0].code == "saturated_activation" and causes[0].confidence >= 0.8, causes
    assert "linear output" in causes[0].fix.summary and "scale the targets into" in causes[0].fix.summary
    # The targets' scale (x100) is this cause's evidence, not a standardization to do.
    assert all(c.confidence < causes[0].confidence for c in causes[1:])
    assert "unscaled_data" not in [c.code for c in causes]
    assert last > 5.0  # the loss floor: the sigmoid at 1 against targets in [1, 9]


def test_a_sigmoid_on_signed_targets_is_found_by_their_minimum():
    # Stack Overflow 5105718 ("Multi-layer neural network won't predict negative values"): a sigmoid output on
    # sine targets in [-1, 1]. Their mean is inside [0, 1] and |max| is 1: the torch adapter's min shows it.
    loud, causes, _ = _train("signed", nn.Sigmoid)
    assert [f.code for f in loud] == ["output_out_of_range"] and loud[0].evidence["targets_min"] < -0.5
    assert causes[0].code == "saturated_activation"
    loud, causes, last = _train("signed", nn.Tanh)  # in a tanh's range: learns, quiet
    assert loud == [] and causes == [] and last < 0.2


@pytest.mark.parametrize("why, targets, output, criterion", [
    ("the in-range twin: targets scaled into [0, 1]", "in", nn.Sigmoid, nn.functional.mse_loss),
    ("a binary classifier: sigmoid output, 0/1 labels, BCE", "labels", nn.Sigmoid, nn.functional.binary_cross_entropy),
    ("the fix: a linear output", "out", nn.Identity, nn.functional.mse_loss),
])
def test_quiet_where_the_output_can_reach_the_targets(why, targets, output, criterion):
    loud, causes, last = _train(targets, output, criterion)
    assert loud == [] and causes == [], (why, loud, causes)
    assert last < 0.5, why  # each trains well
