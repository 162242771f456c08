"""Trials of the learning rate (issue 16): Adam's first update as large as the weights restarts the run from its
initial snapshot at a lower LR (``lower_lr_from_start``); updates far below the weights raise the LR
(``raise_lr``). Each proposed on its evidence only, kept only if the loss beats its trend."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainguard.core.policies import Plan
from trainguard.core.policies.lower_lr_from_start import lower_lr_from_start
from trainguard.core.policies.raise_lr import raise_lr
from trainguard.core.stats import LayerStats, StepStats

from _repair_runs import sampled_run

torch.set_num_threads(1)


def _layers(ratio: float, adam_rms: float | None = 1.0) -> tuple[LayerStats, ...]:
    return (LayerStats("0.weight", update_ratio=ratio, adam_update_rms=adam_rms),
            LayerStats("0.bias", update_ratio=100.0, adam_update_rms=adam_rms),  # biases say nothing
            LayerStats("2.weight", update_ratio=ratio, adam_update_rms=adam_rms))


def _first_steps(repair, ratio, losses, adam_rms=1.0):
    state, proposals = repair.init(), []
    for step, loss in enumerate(losses):
        layers = _layers(ratio, adam_rms) if step == 0 else ()
        proposal, state = repair.propose(StepStats(step=step, loss=loss, layers=layers), (), Plan(), state)
        proposals.append(proposal)
    return proposals


def test_lower_lr_from_start_needs_a_first_adam_update_as_large_as_the_weights_and_the_loss_rising_after_it():
    rising = [2.0, 3.0, 2.8, 2.6, 2.5]
    proposal = _first_steps(lower_lr_from_start(), 5.0, rising)[3]
    assert proposal.restore_before == 0 and proposal.params["lr_factor"] == pytest.approx(0.01)
    assert _first_steps(lower_lr_from_start(), 14.0, rising)[3].params["lr_factor"] == pytest.approx(0.001)
    assert not any(_first_steps(lower_lr_from_start(), 0.5, rising))  # a healthy first step (corpus: <= 0.1)
    assert not any(_first_steps(lower_lr_from_start(), 5.0, [2.0, 1.9, 1.8, 1.7, 1.6]))  # the loss fell after it
    assert not any(_first_steps(lower_lr_from_start(), 5.0, rising, adam_rms=None))  # not Adam
    assert not any(_first_steps(lower_lr_from_start(), 5.0, rising, adam_rms=1e4))  # v underflowed: epsilon's
    assert _first_steps(lower_lr_from_start(), 5.0, [2.0, math.nan, math.nan, math.nan])[3] is not None


def _classifier_run(policy: str, lr: float, optimizer_class, steps: int = 200):
    torch.manual_seed(3)
    x = torch.randn(1024, 20)
    y = (x @ torch.randn(20, 10)).argmax(1)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = optimizer_class(model.parameters(), lr=lr)
    return sampled_run(model, optimizer, x, y, nn.functional.cross_entropy, policy, batch=32, steps=steps, tail=30)


def test_adam_at_lr_1_is_restarted_from_its_initial_weights_at_a_power_of_ten_lower_and_trains():
    wrecked, _ = _classifier_run("observe", 1.0, torch.optim.Adam)
    repaired, guard = _classifier_run("auto", 1.0, torch.optim.Adam)
    trial = next(a for a in guard.actions if a.kind == "trial")
    assert trial.params["repair"] == "lower_lr_from_start" and trial.effect["kept"] is True
    assert trial.params["snapshot"] == 0 and trial.params["lr_factor"] <= 0.01
    assert repaired < 0.5 * wrecked


def test_raise_lr_needs_every_update_tiny_and_the_loss_barely_declining():
    def drive(ratios, losses):
        repair, state, out = raise_lr(), raise_lr().init(), []
        for step, loss in enumerate(losses):
            layers = _layers(ratios[step // 25], None) if step % 25 == 0 else ()
            proposal, state = repair.propose(StepStats(step=step, loss=loss, layers=layers), (), Plan(), state)
            out.append(proposal)
        return [p for p in out if p is not None]

    slow = [2.0 - 0.001 * s for s in range(80)]
    proposals = drive([1e-6] * 4, slow)
    assert proposals and proposals[0].params["lr_factor"] == pytest.approx(1e4)  # at most 1e4
    assert drive([2e-5] * 4, slow)[0].params["lr_factor"] == pytest.approx(100.0)  # 2e-5 x 100 <= 1e-2
    assert not drive([0.0] * 4, slow)  # no gradient at all: dead units, not the learning rate
    assert not drive([1e-3] * 4, slow)  # healthy steps
    assert not drive([1e-6] * 4, [2.0 * 0.97 ** s for s in range(80)])  # trained well, then slowed: converged


def _regression_run(policy: str, lr: float, steps: int = 300):
    torch.manual_seed(5)
    x = torch.randn(1024, 10)
    y = x @ torch.randn(10, 1)
    model = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    return sampled_run(model, optimizer, x, y, nn.functional.mse_loss, policy, batch=256, steps=steps, tail=30)


def test_sgd_at_a_tiny_lr_gets_its_lr_raised_by_a_kept_trial_and_ends_lower():
    crawling, _ = _regression_run("observe", 1e-5)
    raised, guard = _regression_run("auto", 1e-5)
    trial = next(a for a in guard.actions if a.kind == "trial")
    assert trial.params["repair"] == "raise_lr" and trial.effect["kept"] is True and trial.params["lr_factor"] >= 100
    assert raised < 0.5 * crawling
