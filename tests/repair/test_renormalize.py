"""A sigmoid stack whose output collapsed to a constant (seed 001, experiment 3): ``renormalize_saturating_layers``
brings each hidden layer's pre-activations to mean 0, variance 1 on a batch (Salimans & Kingma 2016; Mishkin &
Matas 2016), as a trial (trainguard/core/policies/renormalize.py)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from trainguard.adapters.torch.effector import renormalize_next_batch
from trainguard.core.findings import Finding, Severity
from trainguard.core.policies import Plan
from trainguard.core.policies.renormalize import renormalize_saturating_layers
from trainguard.core.stats import ActivationStats, StepStats
from trainguard.scenarios import get_scenario

torch.set_num_threads(1)


def _stack() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(1, 8), nn.Sigmoid(), nn.Linear(8, 8), nn.Sigmoid(), nn.Linear(8, 1))


def test_the_next_batch_renormalizes_each_layer_in_forward_order_once():
    model = _stack()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.rand(32, 1)
    model(x).sum().backward()
    optimizer.step()
    done, handles = renormalize_next_batch(model, optimizer, ("1", "3"))
    assert done == {"units": 16, "layers": ["1", "3"]} and len(handles) == 2
    out = model(x)
    with torch.no_grad():
        first = model[0](x)
        second = model[2](model[1](first))
        for pre in (first, second):  # computed with the new weights, on the same batch
            assert torch.allclose(pre.mean(0), torch.zeros(8), atol=1e-4)
            assert torch.allclose(pre.std(0), torch.ones(8), atol=1e-4)
        assert torch.allclose(out, model(x))  # the forward that ran used the new weights
    assert torch.all(optimizer.state[model[2].weight]["momentum_buffer"] == 0)
    weights = [p.detach().clone() for p in model.parameters()]
    model(torch.rand(32, 1) * 5)  # the hooks ran once and are gone
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))


def test_a_relu_module_or_a_one_sample_batch_is_left_alone():
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    done, handles = renormalize_next_batch(model, torch.optim.SGD(model.parameters(), lr=0.1), ("1",))
    assert done["units"] == 0 and handles == [] and "tanh/sigmoid" in done["not_applied"][0]
    stack = _stack()
    before = [p.detach().clone() for p in stack.parameters()]
    renormalize_next_batch(stack, torch.optim.SGD(stack.parameters(), lr=0.1), ("1", "3"))
    stack(torch.rand(1, 1))
    assert all(torch.equal(a, b) for a, b in zip(before, stack.parameters()))


def _stats(kinds: tuple[str, ...]) -> StepStats:
    acts = tuple(ActivationStats(str(2 * i + 1), kind, output_std=0.1) for i, kind in enumerate(kinds))
    return StepStats(step=75, loss=0.08, activations=acts + (ActivationStats("(output)", "output", output_std=1e-4),))


def _collapse(severity: Severity) -> Finding:
    return Finding("output_collapse", severity, 75, "(output)", {"value": 1e-4}, "collapsed")


@pytest.mark.parametrize("kinds, severity, modules", [
    (("sigmoid", "sigmoid"), Severity.WARNING, ["1", "3"]),
    (("tanh",), Severity.WARNING, ["1"]),
    (("relu", "relu"), Severity.WARNING, None),  # a dead ReLU output or off-scale targets: other repairs
    (("sigmoid", "sigmoid"), Severity.INFO, None),  # a model that has not started to learn yet
])
def test_proposed_on_a_collapsed_output_over_hidden_sigmoid_or_tanh_layers(kinds, severity, modules):
    repair = renormalize_saturating_layers()
    proposal, _ = repair.propose(_stats(kinds), (_collapse(severity),), Plan(), repair.init())
    assert (proposal.params["modules"] if proposal else None) == modules
    if proposal:
        assert repair.once(Plan(), proposal.params).renormalize == tuple(modules)


def test_seed001_deep_sigmoid_stack_is_rid_of_its_near_constant_predictions_under_auto():
    scenario = get_scenario("vanishing_gradient")
    assert scenario.run(healthy=False, guard_policy=None).failed
    guarded = scenario.run(healthy=False, guard_policy="auto")
    assert not guarded.failed, guarded.outcome
    assert any(a.kind == "renormalize_saturating_layers" for a in guarded.actions)
    # the 100-step run ends inside the trial's window: the log says the change stands unjudged
    verdicts = [a for a in guarded.actions if a.kind == "trial"]
    assert len(verdicts) == 1 and verdicts[0].effect["open"] and verdicts[0].effect["kept"] is None


def test_an_activation_called_as_a_function_is_no_module_and_is_refused_with_the_reason():
    # the probe names a functional activation by the module it takes ("fc->tanh"), or a dotted path's last part
    model = _stack()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    done, handles = renormalize_next_batch(model, optimizer, ("0->sigmoid", "encoder.fc->tanh"))
    assert done["units"] == 0 and handles == [] and len(done["not_applied"]) == 2
