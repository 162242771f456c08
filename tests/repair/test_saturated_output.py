"""A tanh output stuck in saturation on the wrong side (Stack Overflow 13632976; LeCun et al. 1998, sec. 4.5):
``shrink_saturated_output`` scales its units' incoming weights back to where tanh bends, as a trial judged on the
mean loss (trainguard/core/policies/desaturate.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import trainguard
from trainguard.adapters.torch.effector import shrink_saturated_units
from trainguard.core.findings import Finding, Severity
from trainguard.core.policies import Plan
from trainguard.core.policies.desaturate import shrink_saturated_output
from trainguard.core.policies.trial import Proposal, Repair, trials
from trainguard.core.stats import StepStats

torch.set_num_threads(1)

SEGMENTS = ["1111110", "0110000", "1101101", "1111001", "0110011", "1011011", "1011111", "1110000", "1111111",
            "1111011"]


def test_only_the_units_that_can_saturate_are_scaled_to_the_bound_and_their_momentum_reset():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3), nn.Tanh())
    with torch.no_grad():
        model[2].weight.copy_(torch.tensor([[4.0, -4.0, 1.0, 0.0, 0.0], [0.1, 0.2, -0.3, 0.1, 0.0],
                                            [-2.0, 0.0, 0.0, 0.0, 1.0]]))
        model[2].bias.copy_(torch.tensor([1.0, 0.1, 0.0]))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(8, 4)).sum().backward()
    optimizer.step()
    kept, first = model[2].weight[1].clone(), model[2].weight[0].clone()
    first_reach = float(first.detach().abs().sum() + model[2].bias.detach()[0].abs())
    done = shrink_saturated_units(model, optimizer, ("3",))
    assert done == {"units": 2, "layers": ["3"]}
    weight = model[2].weight.detach()
    reach = (weight.abs().sum(1) + model[2].bias.detach().abs()).tolist()
    assert reach[0] == pytest.approx(2.5) and reach[2] == pytest.approx(2.5)
    assert torch.equal(weight[1], kept)
    assert torch.allclose(weight[0], first * 2.5 / first_reach)  # the same direction
    momentum = optimizer.state[model[2].weight]["momentum_buffer"]
    assert torch.all(momentum[0] == 0) and torch.all(momentum[2] == 0) and torch.any(momentum[1] != 0)
    with torch.no_grad():  # on every input in [-1, 1]^5 the scaled units stay within the bound
        assert float((model[2](torch.rand(1000, 5) * 2 - 1)[:, [0, 2]]).abs().max()) <= 2.5 + 1e-5


def test_a_layer_on_unbounded_inputs_is_not_scaled():
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh())
    with torch.no_grad():
        model[0].weight.fill_(3.0)
    before = model[0].weight.clone()
    done = shrink_saturated_units(model, torch.optim.SGD(model.parameters(), lr=0.1), ("1",))
    assert done["units"] == 0 and "bounded" in done["not_applied"][0] and torch.equal(model[0].weight, before)


def _finding(severity: Severity, final: bool | None) -> Finding:
    evidence = {"rule": "error_without_gradient", "final_activation": final} if final is not None else {}
    return Finding("saturated_activation", severity, 450, "3", evidence, "saturated")


@pytest.mark.parametrize("finding, proposed", [
    (_finding(Severity.WARNING, True), True),
    (_finding(Severity.INFO, True), False),  # a confident classifier's saturated output: a good fit
    (_finding(Severity.WARNING, None), False),  # a saturated hidden layer: not this repair's evidence
])
def test_proposed_on_a_stuck_final_activation_only(finding, proposed):
    repair = shrink_saturated_output()
    proposal, _ = repair.propose(StepStats(step=450, loss=0.1), (finding,), Plan(), repair.init())
    assert (proposal is not None) == proposed
    if proposed:
        assert proposal.by_mean and proposal.params["modules"] == ["3"]
        assert repair.once(Plan(), proposal.params).desaturate == ("3",)


def _repair(by_mean: bool) -> Repair:
    return Repair("test", lambda: None,
                  lambda stats, findings, plan, st: (Proposal("test", {}, "fix", by_mean=by_mean)
                                                     if stats.step == 40 else None, st),
                  lambda plan, params: plan)


@pytest.mark.parametrize("by_mean", [True, False])
def test_a_trial_judged_by_the_mean_sees_a_stuck_sample_that_the_median_ignores(by_mean):
    # one sample in ten at 0.5, the rest at 0.004; after the change the stuck one is gone, the rest the same
    before = [0.5 if s % 10 == 0 else 0.004 for s in range(41)]
    after = [0.004] * 50
    policy = trials(_repair(by_mean), history=32, window=40)
    state = policy.init()
    verdicts = []
    for step, loss in enumerate(before + after):
        plan, state = policy.update(StepStats(step=step, loss=loss), (), Plan(), state)
        verdicts += [a for a in plan.actions if a.kind == "trial"]
    assert len(verdicts) == 1 and verdicts[0].effect["kept"] is by_mean


def _bcd_run(policy, steps: int):
    """Stack Overflow 13632976's 4-20-7 tanh network, targets +-1, SGD 0.5 one pattern at a time (the corpus'
    seed 1, the pattern order from the global RNG: one output unit ends up saturated on the wrong side); the mean
    of the last 200 losses, the guard."""
    torch.manual_seed(1)
    x = torch.tensor([[1.0 if (d >> b) & 1 else -1.0 for b in (3, 2, 1, 0)] for d in range(10)])
    y = torch.tensor([[1.0 if c == "1" else -1.0 for c in SEGMENTS[d]] for d in range(10)])
    model = nn.Sequential(nn.Linear(4, 20), nn.Tanh(), nn.Linear(20, 7), nn.Tanh())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    guard = trainguard.Guard(model, optimizer, policy=policy) if policy is not None else None
    losses = []
    while len(losses) < steps:
        for i in torch.randperm(10).tolist():
            optimizer.zero_grad()
            loss = ((model(x[i:i + 1]) - y[i:i + 1]) ** 2).mean()
            loss.backward()
            guard.step(loss, inputs=x[i:i + 1], targets=y[i:i + 1]) if guard is not None else optimizer.step()
            losses.append(loss.item())
    if guard is not None:
        guard.close()
    return float(np.mean(losses[-200:])), guard


def test_a_tanh_output_saturated_on_the_wrong_side_is_scaled_back_by_a_kept_trial():
    stuck, _ = _bcd_run(None, 1200)
    repaired, guard = _bcd_run("auto", 1200)
    started = next(a for a in guard.actions if a.kind == "shrink_saturated_output")
    trial = next(a for a in guard.actions if a.kind == "trial")
    assert started.effect["units"] >= 1 and trial.effect["kept"] is True and "mean loss" in trial.effect["why"]
    assert stuck > 0.05 and repaired < 0.2 * stuck and math.isfinite(repaired)
