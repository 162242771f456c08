"""Batches that are non-finite by themselves, recurring through a run: ``auto`` skips each and does nothing more
(escalate.py: a non-finite step after steps back at the run's level is a new bad batch, not the old trouble)."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

import trainguard
from trainguard.core.policies import Plan, escalate
from trainguard.core.stats import StepStats

NAN = float("nan")


def _healthy(step: int, rng: np.random.Generator, level: float = 1.0) -> StepStats:
    return StepStats(step=step, loss=float(level * rng.lognormal(0, 0.1)), grad_norm=float(rng.lognormal(0, 0.1)))


def _nan(step: int) -> StepStats:
    return StepStats(step=step, loss=NAN, grad_norm=NAN, loss_finite=False, grads_finite=False)


def _kinds(stream) -> list[str]:
    policy = escalate(patience=3, hold=10)
    state, kinds = policy.init(), []
    for stats in stream:
        plan, state = policy.update(stats, (), Plan(), state)
        kinds += [a.kind for a in plan.actions]
    return kinds


def test_a_nan_batch_every_few_steps_on_a_run_at_its_level_is_only_skipped():
    rng = np.random.default_rng(0)
    stream = [_healthy(i, rng) for i in range(40)]
    for start in range(40, 200, 5):  # a NaN batch, then 4 healthy steps at the run's level
        stream += [_nan(start)] + [_healthy(start + i, rng) for i in range(1, 5)]
    assert _kinds(stream) == []


def test_nan_steps_between_elevated_losses_still_climb_the_chain():
    rng = np.random.default_rng(0)
    stream = [_healthy(i, rng) for i in range(40)]
    for start in range(40, 200, 5):  # the steps between are 5x the run's level: the trouble persists
        stream += [_nan(start)] + [_healthy(start + i, rng, level=5.0) for i in range(1, 5)]
    kinds = _kinds(stream)
    assert kinds[:2] == ["clip", "lr_backoff"]


def _reward_like_run(policy: str) -> tuple[list[float], nn.Module, object]:
    """A small regression whose data hold a few rows of NaN inputs (as an empty answer averaged to 0/0): every
    batch holding one has a NaN loss and NaN gradients, the others are healthy. Adam, 240 steps."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((960, 8)).astype(np.float32)
    y = (x @ rng.standard_normal(8) + 0.1 * rng.standard_normal(960)).astype(np.float32)
    x[rng.choice(960, size=5, replace=False)] = np.nan
    x, y = torch.from_numpy(x), torch.from_numpy(y).unsqueeze(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    guard = trainguard.Guard(model, opt, policy=policy)
    order = torch.Generator().manual_seed(2)
    losses = []
    for _ in range(4):
        perm = torch.randperm(960, generator=order)
        for i in range(0, 960, 16):
            idx = perm[i:i + 16]
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x[idx]), y[idx])
            loss.backward()
            guard.step(loss, batch_size=len(idx))
            losses.append(loss.item())
    guard.close()
    return losses, model, guard


def test_auto_skips_nan_batches_in_the_data_as_safe_does_with_no_clip_nor_lr_cut():
    losses, model, guard = _reward_like_run("auto")
    assert sum(not math.isfinite(v) for v in losses) >= 16  # the bad batches recur through the run
    kinds = {a.kind for a in guard.actions}
    assert kinds == {"skip_step"}, kinds
    _, safe_model, _ = _reward_like_run("safe")
    for p, q in zip(model.parameters(), safe_model.parameters()):
        assert torch.equal(p, q)
