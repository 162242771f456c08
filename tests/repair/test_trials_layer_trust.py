"""The layer-wise update equalization trial (LARS-style, You et al. 2017) in ``auto`` (issue 16): proposed when the
first weight tensor's gradient norm is at most 1e-3 of the last one's (AUTOTRAINER's vanishing ratio) on 3 sampled
steps while the loss stalls; kept only if the loss then beats its trend."""
from __future__ import annotations

import torch
from torch import nn

from trainguard.core.policies import Plan
from trainguard.core.policies.layer_trust import equalize_layer_updates
from trainguard.core.stats import LayerStats, StepStats

from _repair_runs import sampled_run

torch.set_num_threads(1)


def _proposals(first_grad: float, losses: list[float], last_grad: float = 1.0) -> list:
    repair, state, out = equalize_layer_updates(), equalize_layer_updates().init(), []
    for step, loss in enumerate(losses):
        layers = (LayerStats("0.weight", grad_norm=first_grad), LayerStats("0.bias", grad_norm=1e-9),  # biases: no say
                  LayerStats("2.weight", grad_norm=last_grad)) if step % 25 == 0 else ()
        proposal, state = repair.propose(StepStats(step=step, loss=loss, layers=layers), (), Plan(), state)
        out.append(proposal)
    return [p for p in out if p is not None]


def test_proposed_only_on_a_sustained_first_to_last_gradient_disparity_while_the_loss_stalls():
    flat = [2.3] * 80
    proposals = _proposals(5e-4, flat)
    assert proposals and proposals[0].params["first_to_last_gradient"] == 5e-4
    assert proposals[0].params["max_boost"] == 1e4
    assert not _proposals(2e-3, flat)  # the healthy dev corpus reaches 1/16 at most: far from 1e-3
    assert not _proposals(0.0, flat)  # no gradient at all in the first layer: unused or dead, not vanishing
    assert not _proposals(5e-4, [2.3 - 0.01 * s for s in range(80)])  # the loss is still falling


def deep_sigmoid_run(policy: str):
    """Four sigmoid hidden layers trained by SGD with momentum, as in uvadlc's tutorial 3 (issue 119): the first
    layer's gradient is ~4e-4 of the last one's and the loss stays at ln 10."""
    torch.manual_seed(0)
    x = torch.randn(1024, 32)
    y = (x @ torch.randn(32, 10)).argmax(1)
    sizes, layers = [32, 128, 128, 128, 128], []
    for n_in, n_out in zip(sizes, sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.Linear(128, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return sampled_run(model, optimizer, x, y, nn.functional.cross_entropy, policy, batch=64, steps=400, tail=30)


def test_a_deep_sigmoid_stack_that_does_not_learn_gets_its_layer_updates_equalized_and_trains():
    stuck, _ = deep_sigmoid_run("observe")
    repaired, guard = deep_sigmoid_run("auto")
    trial = next(a for a in guard.actions if a.kind == "trial")
    assert trial.params["repair"] == "equalize_layer_updates" and trial.effect["kept"] is True
    assert trial.params["first_to_last_gradient"] <= 1e-3
    assert stuck > 2.2 and repaired < 0.75 * stuck
