"""The torch executor: what each order does to a real optimizer, and that a user's scheduler keeps working."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import trainguard
from trainguard import policies
from trainguard.adapters.torch.effector import unitwise_clip_
from trainguard.core.actions import Action
from trainguard.core.policies import Policy
from trainguard.core.policies.clipping import unitwise_clip
from trainguard.io.runlog import read_runlog


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return x, x.sum(1, keepdim=True)


def _loop(model, opt, guard, steps, sched=None, poison=(), seed=0):
    x, y = _data(seed=seed)
    for step in range(steps):
        idx = torch.arange(step * 8, step * 8 + 8) % len(x)
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x[idx]), y[idx])
        if step in poison:
            loss = loss * float("nan")
        loss.backward()
        if guard is not None:
            guard.step(loss, batch_size=8)
        else:
            opt.step()
        if sched is not None:
            sched.step()


def _orders(**standing) -> Policy:
    """A test policy that gives the same standing orders every step."""
    return Policy("orders", tuple, lambda stats, findings, plan, state: (plan._replace(**standing), state))


def test_skip_leaves_adam_state_and_weights_untouched():
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    guard = trainguard.Guard(model, opt, policy="safe")
    _loop(model, opt, guard, 3)
    weights = [p.detach().clone() for p in model.parameters()]
    state = {k: v.clone() for k, v in opt.state[model.weight].items()}
    _loop(model, opt, guard, 1, poison={0})
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))
    assert all(torch.equal(state[k], opt.state[model.weight][k]) for k in state)  # step count too
    guard.close()
    assert [a.kind for a in guard.actions] == ["skip_step"]
    assert guard.actions[0].reason == "non_finite" and guard.actions[0].step == 3


def test_user_composition_clips_as_clip_grad_norm_by_hand():
    def train(policy):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        if policy is None:
            x, y = _data()
            for step in range(8):
                idx = torch.arange(step * 8, step * 8 + 8)
                opt.zero_grad()
                nn.functional.mse_loss(model(x[idx]), y[idx]).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
                opt.step()
            return model, None
        guard = trainguard.Guard(model, opt, policy=policy)
        _loop(model, opt, guard, 8)
        guard.close()
        return model, guard

    by_hand, _ = train(None)
    composed, guard = train(policies.chain(policies.skip_if_non_finite(), policies.clip_global_norm(0.1)))
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(by_hand.parameters(), composed.parameters()))
    assert [a.kind for a in guard.actions] == ["clip"] * 8


def test_lr_backoff_scales_the_update_and_the_scheduler_never_sees_it():
    def run(policy):
        torch.manual_seed(0)
        model = nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        guard = trainguard.Guard(model, opt, policy=policy, scheduler=sched) if policy else None
        before = model.weight.detach().clone()
        _loop(model, opt, guard, 5, sched=sched)
        return model.weight.detach() - before, [g["lr"] for g in opt.param_groups], sched.get_last_lr()

    delta_bare, lrs_bare, last_bare = run(None)
    delta_half, lrs_half, last_half = run(_orders(lr_scale=0.5))
    assert lrs_half == lrs_bare and last_half == last_bare  # 0.1 -> 0.025 after 5 steps, both
    assert not torch.equal(delta_half, delta_bare)
    assert delta_half.norm() < 0.8 * delta_bare.norm()


def test_unitwise_clip_matches_the_numpy_reference():
    torch.manual_seed(0)
    params = [torch.randn(5, 3), torch.randn(2, 3, 3, 3), torch.randn(4)]
    grads = [torch.randn_like(p) * 10 for p in params]
    expected = [unitwise_clip(g.double().numpy(), p.double().numpy(), 0.05) for p, g in zip(params, grads)]
    unitwise_clip_(params, grads, 0.05)
    assert all(torch.allclose(g.double(), torch.from_numpy(e), rtol=1e-5) for g, e in zip(grads, expected))


def test_adam_update_cap_divides_the_update_by_its_rms_as_stable_adamw():
    def spike_update(policy):
        torch.manual_seed(0)
        model = nn.Linear(4, 1, bias=False)
        opt = torch.optim.Adam(model.parameters(), lr=0.1, betas=(0.9, 0.999))
        guard = trainguard.Guard(model, opt, policy=policy)
        _loop(model, opt, guard, 3)  # moments settle on small gradients
        before = model.weight.detach().clone()
        v, t = opt.state[model.weight]["exp_avg_sq"].clone(), float(opt.state[model.weight]["step"]) + 1
        x, y = _data()
        opt.zero_grad()
        nn.functional.mse_loss(model(x[:8]) * 100, y[:8]).backward()  # a sudden 100x gradient
        g = model.weight.grad.clone()
        guard.step(torch.tensor(1.0))
        guard.close()
        v_hat = (0.999 * v + 0.001 * g * g) / (1 - 0.999 ** t)
        return model.weight.detach() - before, torch.sqrt(torch.mean(g * g / v_hat)).item()

    def cap_from_step_3(stats, findings, plan, state):
        return (plan._replace(adam_update_cap=1.0) if stats.step >= 2 else plan), state

    free, rms = spike_update("observe")
    capped, _ = spike_update(Policy("cap", tuple, cap_from_step_3))
    assert rms > 1.5
    assert torch.allclose(capped, free / rms, rtol=1e-4)


def test_restore_mode_under_auto_puts_batchnorm_back_in_train_mode_and_warns():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    guard = trainguard.Guard(model, opt, policy="auto")
    model.eval()
    with pytest.warns(UserWarning, match="eval mode"):
        _loop(model, opt, guard, 2)
    guard.close()
    assert model[1].training
    assert any(a.kind == "restore_mode" and a.params["restored"] for a in guard.actions)


def test_stop_raises_training_stopped_with_the_diagnosis_and_closes_the_log(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    guard = trainguard.Guard(model, opt, policy=policies.skip_if_non_finite(max_consecutive=3),
                             log=tmp_path / "run.jsonl")
    with pytest.raises(trainguard.TrainingStopped, match="3 non-finite steps in a row") as stopped:
        _loop(model, opt, guard, 10, poison=range(2, 10))
    assert stopped.value.step == 4
    log = read_runlog(tmp_path / "run.jsonl")
    assert log.end["status"] == "stopped"
    assert [a.kind for a in log.actions].count("stop") == 1


def test_a_failing_policy_is_contained_and_training_continues_unguarded():
    def broken(stats, findings, plan, state):
        raise RuntimeError("bug in a policy")

    def run(policy):
        torch.manual_seed(0)
        model = nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        guard = trainguard.Guard(model, opt, policy=policy) if policy else None
        _loop(model, opt, guard, 6)
        return model, guard

    bare, _ = run(None)
    with pytest.warns(RuntimeWarning, match="internal error in its repairer"):
        model, guard = run(Policy("broken", tuple, broken))
    assert all(torch.equal(a, b) for a, b in zip(bare.parameters(), model.parameters()))
    assert [f.code for f in guard.findings].count("guard_internal_error") == 1


def test_observe_builds_no_repairer_and_unknown_policies_are_one_line_errors():
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    assert trainguard.Guard(model, opt, policy="observe")._repairer is None
    with pytest.raises(ValueError, match="unknown policy 'fast'"):
        trainguard.Guard(model, opt, policy="fast")


def test_actions_carry_their_measured_effect():
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    guard = trainguard.Guard(model, opt, policy="safe")
    _loop(model, opt, guard, 12, poison={2})
    guard.close()
    (skip,) = guard.actions
    assert math.isnan(skip.effect["loss_before"]) and skip.effect["steps_measured"] == 5
    assert skip.effect["loss_after"] > 0 and isinstance(skip, Action)


def test_spam_moment_reset_and_raised_epsilon_are_carried_out_once_ordered():
    def reset_at_step_2(stats, findings, plan, state):
        if stats.step == 2:
            plan = plan._replace(reset_moments=True, adam_eps=1e-3)
        return plan, state

    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01, eps=1e-8)
    guard = trainguard.Guard(model, opt, policy=Policy("reset", tuple, reset_at_step_2))
    _loop(model, opt, guard, 3)
    state = opt.state[model.weight]
    assert not state["exp_avg"].any() and not state["exp_avg_sq"].any() and float(state["step"]) == 0
    assert opt.param_groups[0]["eps"] == 1e-3
    _loop(model, opt, guard, 1)  # Adam restarts cleanly from the reset moments
    assert torch.isfinite(model.weight).all() and float(opt.state[model.weight]["step"]) == 1
    guard.close()


def test_lr_is_restored_before_the_scheduler_steps_even_when_the_update_was_skipped():
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    guard = trainguard.Guard(model, opt, policy=policies.chain(policies.skip_if_non_finite(), _orders(lr_scale=0.1)),
                             scheduler=sched)
    _loop(model, opt, guard, 4, sched=sched, poison={1, 2})
    guard.close()
    assert opt.param_groups[0]["lr"] == 0.1 * 0.5 ** 4
