"""Guard(budget=...): full measurement on some steps only (trainguard.core.budget), on small real runs.

The small MLP's step (~0.1 ms) is cheap relative to the guard, so the budget stretches to its cap as soon as the
ramp lets it: the decisions asserted here do not depend on the machine's speed."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import trainguard
from trainguard.core.budget import DEFAULT_CAP, RAMP_STEPS


def model_and_data(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    x, y = torch.randn(256, 8), torch.randn(256, 1)
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), x, y


def train(guard, model, optimizer, x, y, steps: int, poison=lambda i: False, before_step=None):
    """Returns the weights after each step; ``poison(i)``: a NaN in step i's inputs."""
    weights = []
    for i in range(steps):
        xb, yb = x[(i * 32) % 256:(i * 32) % 256 + 32], y[(i * 32) % 256:(i * 32) % 256 + 32]
        if poison(i):
            xb = xb.clone()
            xb[0, 0] = float("nan")
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(xb), yb)
        loss.backward()
        if before_step is not None:
            before_step(i)
        if guard is None:
            optimizer.step()
        else:
            guard.step(loss, batch_size=32, inputs=xb, targets=yb)
        weights.append(model[0].weight.detach().clone())
    return weights


def records(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_light_steps_are_logged_with_their_losses_and_a_full_step_comes_at_least_every_cap_steps(tmp_path):
    model, optimizer, x, y = model_and_data()
    guard = trainguard.Guard(model, optimizer, policy="observe", log=str(tmp_path / "run.jsonl"), budget=0.02)
    run = RAMP_STEPS * DEFAULT_CAP + 500  # past the ramp
    train(guard, model, optimizer, x, y, run)
    guard.close()
    steps = [r for r in records(tmp_path / "run.jsonl") if r["type"] == "step"]
    assert [r["step"] for r in steps] == list(range(run))  # every step is in the log, once, in order
    light = {r["step"]: r for r in steps if r.get("light")}
    measured = [r["step"] for r in steps if not r.get("light")]
    assert len(light) > 0.8 * run  # most steps were light (the ramp measures ~330 of its first 3,072 in full)
    assert all("grad_norm" not in r and r["lrs"] == [0.01] and r["batch_size"] == 32 for r in light.values())
    assert all("grad_norm" in r for r in steps if not r.get("light"))
    assert measured[:2 * RAMP_STEPS] == list(range(2 * RAMP_STEPS))  # the warm-up and the ramp's start
    assert max(b - a for a, b in zip(measured, measured[1:])) == DEFAULT_CAP
    symptoms = {f.step for f in guard.findings} & set(light)  # light steps with a finding: their loss is evidence
    assert [s.step for s in guard.history] == sorted(measured + list(symptoms))  # the history keeps the measured
    # the light steps' losses are the run's own
    model2, optimizer2, _, _ = model_and_data()
    losses = []
    train(None, model2, optimizer2, x, y, run,
          before_step=lambda i: losses.append(nn.functional.mse_loss(
              model2(x[(i * 32) % 256:(i * 32) % 256 + 32]), y[(i * 32) % 256:(i * 32) % 256 + 32]).item()))
    assert all(r["loss"] == pytest.approx(losses[step], rel=1e-6) for step, r in light.items())


def test_a_loss_spike_on_a_light_step_is_found_at_its_step_and_the_next_steps_are_full():
    model, optimizer, x, y = model_and_data()
    guard = trainguard.Guard(model, optimizer, policy="observe")  # the default budget
    spiked = []
    for i in range(1500):
        xb, yb = x[(i * 32) % 256:(i * 32) % 256 + 32], y[(i * 32) % 256:(i * 32) % 256 + 32]
        if not spiked and i >= 1000 and guard._light_left > 0:  # a batch of mislabelled targets, on a light step
            spiked.append(i)
            yb = yb + 50.0
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(xb), yb)
        loss.backward()
        guard.step(loss, batch_size=32)
    guard.close()
    (step,) = spiked
    spikes = [f for f in guard.findings if f.code == "loss_spike"]
    assert spikes and spikes[0].step == step
    measured = [s.step for s in guard.history]
    after = [s for s in measured if s > step]
    assert after[:DEFAULT_CAP] == list(range(after[0], after[0] + DEFAULT_CAP))  # full steps after the finding
    assert after[0] - step < DEFAULT_CAP


def test_a_nan_on_a_light_step_is_skipped_by_safe_and_located_at_once(tmp_path):
    model, optimizer, x, y = model_and_data()
    guard = trainguard.Guard(model, optimizer, policy="safe", log=str(tmp_path / "run.jsonl"), budget=0.02)
    poisoned = []

    def poison(i: int) -> bool:  # the first step from 400 on that the budget has planned as light
        if not poisoned and i >= 400 and guard._light_left > 0:
            poisoned.append(i)
            return True
        return False

    weights = train(guard, model, optimizer, x, y, 450, poison=poison)
    guard.close()
    (step,) = poisoned
    assert torch.equal(weights[step], weights[step - 1])  # skipped
    assert all(torch.isfinite(w).all() for w in weights)
    record = next(r for r in records(tmp_path / "run.jsonl") if r["type"] == "step" and r["step"] == step)
    assert record["loss_finite"] is False and record["first_nonfinite_module"] == "(inputs)"  # the search ran
    assert any(f.code == "non_finite" and f.step == step for f in guard.findings)
    assert [a.kind for a in guard.actions if a.step == step] == ["skip_step"]


def test_the_budget_is_the_default():
    model, optimizer, x, y = model_and_data()
    guard = trainguard.Guard(model, optimizer, policy="safe")
    train(guard, model, optimizer, x, y, 600)
    guard.close()
    assert len(guard.history) < 300  # the tiny model's step is cheap relative to the guard: most steps light


def test_budget_none_measures_every_step(tmp_path):
    model, optimizer, x, y = model_and_data()
    guard = trainguard.Guard(model, optimizer, policy="observe", log=str(tmp_path / "run.jsonl"), budget=None)
    train(guard, model, optimizer, x, y, 60)
    guard.close()
    log = records(tmp_path / "run.jsonl")
    assert [r["step"] for r in log if r["type"] == "step"] == list(range(60))
    assert not [r for r in log if r["type"] == "event" and "budget" in r["kind"] or r.get("light")]


def test_where_the_budget_cannot_apply_every_step_is_full_and_the_log_says_why(tmp_path):
    model, optimizer, x, y = model_and_data()
    guard = trainguard.Guard(model, optimizer, policy="auto", log=str(tmp_path / "run.jsonl"), budget=0.02)
    train(guard, model, optimizer, x, y, 40)
    guard.close()
    log = records(tmp_path / "run.jsonl")
    assert [r["step"] for r in log if r["type"] == "step"] == list(range(40))
    assert [r["kind"] for r in log if r["type"] == "event"][:1] == ["overhead_budget_off"]


def test_a_bad_budget_is_a_one_line_error():
    model, optimizer, _, _ = model_and_data()
    with pytest.raises(ValueError, match="budget must be a share"):
        trainguard.Guard(model, optimizer, budget=2)


def test_steps_long_relative_to_the_guard_are_all_full_and_the_run_bitwise_the_unbudgeted_one(tmp_path):
    """A step of ~10 ms of CPU time (a matrix product in the loop) and a budget of half of it: the guard's ~1 ms
    fits with a wide margin (whatever the machine's speed, it scales both), so every step is measured in full, as
    without a budget: the same step records, the same weights."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the budget's clock is the thread's CPU time
    try:
        heavy = torch.randn(700, 700)
        runs = []
        for budget in (None, 0.5):
            model, optimizer, x, y = model_and_data()
            log = tmp_path / f"{budget}.jsonl"
            guard = trainguard.Guard(model, optimizer, policy="safe", log=str(log), budget=budget)
            weights = train(guard, model, optimizer, x, y, 30, before_step=lambda i: heavy @ heavy)
            guard.close()
            steps = [r for r in records(log) if r["type"] == "step"]
            runs.append((weights[-1], steps))
        assert torch.equal(runs[0][0], runs[1][0])
        assert runs[0][1] == runs[1][1] and len(runs[0][1]) == 30
    finally:
        torch.set_num_threads(threads)


def test_a_nan_gradient_behind_a_finite_loss_on_a_light_step_is_skipped_by_safe():
    # sqrt at 0 inside the network: its forward is 0, its backward 0 * inf = NaN into every gradient before it
    model, optimizer, x, y = model_and_data()
    guard = trainguard.Guard(model, optimizer, policy="safe")  # the default budget
    poisoned, weights = [], []
    for i in range(450):
        xb, yb = x[(i * 32) % 256:(i * 32) % 256 + 32], y[(i * 32) % 256:(i * 32) % 256 + 32]
        hidden = model[0](xb)
        loss = nn.functional.mse_loss(model[2](model[1](hidden)), yb)
        if not poisoned and i >= 400 and guard._light_left > 0:
            poisoned.append(i)
            loss = loss + 0.0 * torch.sqrt(hidden * 0.0).sum()
        optimizer.zero_grad()
        loss.backward()
        assert math.isfinite(loss.item())
        guard.step(loss, batch_size=32)
        weights.append(model[0].weight.detach().clone())
    guard.close()
    (step,) = poisoned
    assert torch.equal(weights[step], weights[step - 1])  # skipped, not applied
    assert all(torch.isfinite(w).all() for w in weights)
    assert any(f.code == "non_finite" and f.step == step for f in guard.findings)
    assert [a.kind for a in guard.actions if a.step == step] == ["skip_step"]


def test_the_gradient_sentinel_is_safes_alone_and_its_hook_goes_at_close():
    model, optimizer, x, y = model_and_data()
    safe = trainguard.Guard(model, optimizer, policy="safe")
    assert safe._sentinel is not None and safe._sentinel.watching  # a hook on 0.bias (16 entries)
    safe.close()
    assert not safe._sentinel.watching
    observe = trainguard.Guard(model, optimizer, policy="observe")
    assert observe._sentinel is None
    observe.close()
