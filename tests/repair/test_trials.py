"""Trials (issue 16): a repair that changes the training is tried on a window, kept only if the loss falls
measurably below its trend, else rolled back bit-exactly; Adam's epsilon and the LR cut as such repairs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import trainguard
from trainguard.adapters.torch.effector import equalize_layer_ratios_, recycle_dormant_units
from trainguard.core.findings import Finding, Severity
from trainguard.core.policies import Plan
from trainguard.core.policies.lower_lr import lower_lr
from trainguard.core.policies.trial import Proposal, Repair, improvement, trend, trials
from trainguard.core.stats import StepStats
from trainguard.scenarios import get_scenario

from _repair_runs import dead_hidden_relu, full_batch_run, sampled_run

torch.set_num_threads(1)


def test_trend_is_the_line_through_the_log_losses_and_improvement_needs_a_margin():
    steps = tuple(range(10))
    slope, intercept, noise = trend(steps, tuple(0.1 * s for s in steps))
    assert slope == pytest.approx(0.1) and intercept == pytest.approx(0.0, abs=1e-12) and noise < 1e-9
    wobbly = tuple(0.001 * s + (0.5 if s % 2 else -0.5) for s in range(20))  # a slope far inside the noise
    assert trend(tuple(range(20)), wobbly)[0] == 0.0
    calm_then_rising = tuple(-0.01 * s + (0.2 * (s - 16) if s > 16 else 0.0) for s in range(20))
    slope, level, _ = trend(tuple(range(20)), calm_then_rising)  # trouble in progress: its level is the trend
    assert slope == 0.0 and level == pytest.approx(float(np.median(calm_then_rising[-3:])))
    spiked = tuple(-0.01 * s for s in range(19)) + (2.0,)  # a lone spike at the end tilts nothing
    assert trend(tuple(range(20)), spiked)[0] == pytest.approx(-0.01)
    assert improvement((-0.5,) * 5, noise, margin=0.1, noise_z=2.0)
    assert not improvement((-0.05,) * 5, noise, margin=0.1, noise_z=2.0)  # 5% below the trend: not measurable
    assert not improvement((-0.5,) * 5, 0.3, margin=0.1, noise_z=2.0)  # within 2 sigma of the noise before
    assert trend((3,), (1.5,)) == (0.0, 1.5, 0.0)


def _signal_repair(at: int, factor: float) -> Repair:
    """Proposes an LR multiplier once, at step ``at``."""
    return Repair("test_lr", lambda: None,
                  lambda stats, findings, plan, st: (Proposal("test", {"f": factor}, "fix it") if stats.step == at
                                                     else None, st),
                  lambda plan, params: plan._replace(lr_scale=plan.lr_scale * params["f"]))


def _drive(policy, losses):
    state, plans = policy.init(), []
    for step, loss in enumerate(losses):
        plan, state = policy.update(StepStats(step=step, loss=loss), (), Plan(), state)
        plans.append(plan)
    return plans, state


def test_a_trial_beating_a_rising_trend_is_kept_and_its_orders_stay():
    rising = [math.exp(0.1 * s) for s in range(10)]
    after = [rising[-1]] * 30  # the rise stops once the change is in force
    plans, state = _drive(trials(_signal_repair(9, 0.5), history=8, window=20), rising + after)
    assert plans[9].snapshot >= 1 and plans[9].lr_scale == 0.5 and plans[9].actions[0].kind == "test_lr"
    verdicts = [a for p in plans for a in p.actions if a.kind == "trial"]
    assert len(verdicts) == 1 and verdicts[0].effect["kept"] is True
    assert verdicts[0].params["from_step"] == 11 and verdicts[0].params["to_step"] == 30
    assert all(p.rollback is None for p in plans) and plans[-1].lr_scale == 0.5


def test_a_trial_that_does_not_beat_the_trend_is_rolled_back_to_its_snapshot_and_not_retried():
    rising = [math.exp(0.1 * s) for s in range(40)]  # the change does nothing: the rise goes on
    plans, state = _drive(trials(_signal_repair(9, 0.5), history=8, window=20), rising)
    verdict = next(a for p in plans for a in p.actions if a.kind == "trial")
    assert verdict.effect["kept"] is False and verdict.effect["loss_window"] > verdict.effect["loss_at_start"]
    rollback = next(p.rollback for p in plans if p.rollback is not None)
    assert rollback.label == 10 and rollback.skip_batches == 0
    assert plans[-1].lr_scale == 1.0 and state.failed == frozenset({0})


def test_no_trial_on_a_signed_loss():
    losses = [1.0, -0.5] + [math.exp(0.1 * s) for s in range(30)]
    plans, _ = _drive(trials(_signal_repair(9, 0.5)), losses)
    assert all(p == Plan() for p in plans)


def test_a_failed_trial_leaves_the_run_bitwise_as_if_its_window_never_happened():
    # A change that does nothing on a falling loss cannot beat the trend: the trial fails and rolls back.
    policy = trials(_signal_repair(30, 1.0), window=20)
    guarded, guard = full_batch_run(80, policy)
    verdict = next(a for a in guard.actions if a.kind == "trial")
    assert verdict.effect["kept"] is False
    undone = verdict.params["to_step"] + 1 - verdict.params["snapshot"]  # the updates rolled back
    unguarded, _ = full_batch_run(80 - undone, None)
    for a, b in zip(guarded.state_dict().values(), unguarded.state_dict().values()):
        assert torch.equal(a, b)


def test_fp16_adam_with_an_epsilon_that_rounds_to_zero_trains_on_under_auto(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1)).half()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-10)
    guard = trainguard.Guard(model, optimizer, policy="auto", log=str(tmp_path / "run.jsonl"))
    x = torch.randn(64, 8).half()
    y = (x[:, :1] * 0.5).half()
    losses = []
    for _ in range(120):  # before issue 16: TrainingStopped (skip, clip, back-off, rollback: v underflows again)
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        guard.step(loss)
        losses.append(loss.item())
    guard.close()
    assert math.isnan(losses[1]) and all(math.isfinite(v) for v in losses[2:])
    assert losses[-1] < 0.25 * losses[0]
    assert optimizer.param_groups[0]["eps"] == pytest.approx(torch.finfo(torch.float16).tiny)
    trial = next(a for a in guard.actions if a.kind == "trial")
    assert trial.params["repair"] == "adam_epsilon" and trial.effect["kept"] is True


def test_seed002_blow_up_is_prevented_by_a_kept_epsilon_trial():
    result = get_scenario("adam_epsilon").run(guard_policy="auto", size="small")
    assert not result.failed, result.outcome
    trial = next(a for a in result.actions if a.kind == "trial")
    assert trial.params["repair"] == "adam_epsilon" and trial.effect["kept"] is True
    assert 1e-4 < trial.params["eps"] < 1e-2  # ten times sqrt(v) where it collapsed; the healthy twin uses 1e-3


def test_lower_lr_is_proposed_on_a_divergence_finding_only():
    repair = lower_lr()
    state = repair.init()
    quiet, state = repair.propose(StepStats(step=55, loss=1.0), (), Plan(), state)
    finding = Finding("divergence", Severity.WARNING, 56, None, {"steps": 50}, "rising")
    proposal, state = repair.propose(StepStats(step=56, loss=2.0), (finding,), Plan(), state)
    early, _ = repair.propose(StepStats(step=3, loss=2.0), (finding._replace(step=3),), Plan(), repair.init())
    assert quiet is None and early is None
    assert proposal.params == {"cause": "lr_too_high", "lr_factor": 0.1, "rising_since": 6}
    assert repair.apply(Plan(lr_scale=0.5), proposal.params).lr_scale == pytest.approx(0.05)


def test_a_drifting_loss_at_too_high_an_lr_gets_its_lr_cut_and_ends_lower():
    def run(policy):
        torch.manual_seed(3)
        x = torch.randn(1024, 20)
        y = (x @ torch.randn(20, 10)).argmax(1)
        model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 10))
        optimizer = torch.optim.Adam(model.parameters(), lr=0.3)  # ~100x Adam's usual: the loss climbs and wobbles
        return sampled_run(model, optimizer, x, y, nn.functional.cross_entropy, policy, batch=32, steps=300, tail=50)

    observed, watched = run("observe")
    repaired, guard = run("auto")
    assert any(f.code == "divergence" for f in watched.findings)
    trials_run = [a for a in guard.actions if a.kind == "trial"]
    assert trials_run and trials_run[-1].params["repair"].startswith("lower_lr") and trials_run[-1].effect["kept"]
    assert repaired < 0.5 * observed


def test_redo_reinitializes_only_the_dormant_units_and_leaves_the_users_rng_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight[:2] = -1.0  # units 0 and 1: negative on positive inputs, dead
        model[0].bias[:2] = -1.0
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.rand(16, 3)
    model(x).sum().backward()
    optimizer.step()
    kept_rows, kept_out = model[0].weight[2:].clone(), model[2].weight[:, 2:].clone()
    rng = torch.get_rng_state()
    done = recycle_dormant_units(model, optimizer, ("1",), seed=7)
    assert done == {"units": 2, "layers": ["1"]} and torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(model[0].weight[2:], kept_rows) and torch.equal(model[2].weight[:, 2:], kept_out)
    assert torch.all(model[0].weight[:2].abs() <= 1 / math.sqrt(3)) and not torch.all(model[0].weight[:2] == -1)
    assert torch.all(model[2].weight[:, :2] == 0)
    state = optimizer.state[model[0].weight]
    assert torch.all(state["exp_avg"][:2] == 0) and torch.all(state["exp_avg_sq"][:2] == 0)
    assert torch.all(optimizer.state[model[2].weight]["exp_avg"][:, :2] == 0)


def test_a_dead_hidden_relu_is_recycled_by_a_kept_trial_and_the_network_learns():
    # stats.stackexchange.com/questions/450100: one hidden ReLU, positive features, both weights negative.
    def run(policy):
        _, guard, losses = dead_hidden_relu(policy)
        return float(np.mean(losses[-60:])), guard

    dead, _ = run("observe")
    revived, guard = run("auto")
    trial = next(a for a in guard.actions if a.kind == "trial")
    assert trial.params["repair"] == "recycle_dormant" and trial.effect["kept"] is True
    assert dead > 0.69 and revived < 0.5 * dead


def test_layer_ratios_are_brought_up_to_the_fastest_layer_and_biases_left_alone():
    torch.manual_seed(0)
    first, last, bias = nn.Parameter(torch.randn(8, 4)), nn.Parameter(torch.randn(3, 8)), nn.Parameter(torch.zeros(3))
    first.grad, last.grad, bias.grad = 1e-6 * torch.randn(8, 4), 0.1 * torch.randn(3, 8), torch.ones(3)
    fastest = float(last.grad.norm() / last.detach().norm())
    kept_last, kept_bias = last.grad.clone(), bias.grad.clone()
    equalize_layer_ratios_([first, last, bias], max_boost=1e9)
    assert float(first.grad.norm() / first.detach().norm()) == pytest.approx(fastest, rel=1e-4)
    assert torch.equal(last.grad, kept_last) and torch.equal(bias.grad, kept_bias)
    first.grad = 1e-6 * torch.randn(8, 4)
    before = float(first.grad.norm())
    equalize_layer_ratios_([first, last], max_boost=10.0)  # the boost is capped
    assert float(first.grad.norm()) == pytest.approx(10 * before, rel=1e-5)


def test_a_trend_of_fewer_than_eight_points_is_flat_at_their_median():
    # Adam's first update blew the loss up 3.7 -> 9.3, then it eases: no slope is extrapolated from four points
    logs = tuple(math.log(v) for v in (3.69, 9.33, 8.13, 7.08))
    slope, level, _ = trend((0, 1, 2, 3), logs)
    assert slope == 0.0 and level == pytest.approx(float(np.median(logs)))
