"""Acceptance 3: on healthy runs the repair policies change nothing, bit for bit.

Each configuration trains twice from the same seed: once unguarded (``optimizer.step()``), once with the guard.
The final weights must be bitwise equal and the guard must have taken no action. Different models, optimizers
and LR schedulers, so a threshold that fires on some ordinary dynamics (Adam's early steps, OneCycle's warm-up,
BatchNorm) shows up here.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import nn

import trainguard

STEPS = 240


def _regression(seed: int, n: int = 256, d: int = 8):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = x @ torch.randn(d, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)
    return x, y


def _classes(seed: int, n: int = 256, d: int = 12, k: int = 4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, :k] + 0.3 * torch.randn(n, k, generator=g)).argmax(1)
    return x, y


def _images(seed: int, n: int = 128):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    return x, y


def mlp_sgd_momentum():
    x, y = _regression(1)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return model, opt, None, x, y, nn.functional.mse_loss


def cnn_adam_steplr():
    x, y = _images(2)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 2))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    return model, opt, torch.optim.lr_scheduler.StepLR(opt, step_size=60, gamma=0.5), x, y, nn.functional.cross_entropy


def bn_dropout_adamw_onecycle():
    x, y = _classes(3)
    model = nn.Sequential(nn.Linear(12, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 4))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=STEPS)
    return model, opt, sched, x, y, nn.functional.cross_entropy


def tanh_sgd_cosine():
    x, y = _regression(4)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=STEPS)
    return model, opt, sched, x, y, nn.functional.mse_loss


def lstm_rmsprop_exponential():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(256, 6, 3, generator=g)
    y = x.sum(dim=(1, 2)).unsqueeze(1) / 4

    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(3, 8, batch_first=True)
            self.head = nn.Linear(8, 1)

        def forward(self, inp):
            return self.head(self.lstm(inp)[0][:, -1])

    model = Seq()
    opt = torch.optim.RMSprop(model.parameters(), lr=3e-3)
    return model, opt, torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.995), x, y, nn.functional.mse_loss


def seed001_experiment1():
    """Seed 001's healthy experiment: x in [0, 1], y = x, Dense(32) -> Dense(1), SGD lr 0.1, batch 20."""
    rng = np.random.RandomState(0)
    xs = np.linspace(0, 1, 100, dtype=np.float32)
    x = torch.tensor(xs + rng.normal(0, 0.05, xs.shape).astype(np.float32)).unsqueeze(1)
    model = nn.Sequential(nn.Linear(1, 32), nn.Linear(32, 1))
    return model, torch.optim.SGD(model.parameters(), lr=0.1), None, x, torch.tensor(xs).unsqueeze(1), \
        nn.functional.mse_loss


CONFIGS = [mlp_sgd_momentum, cnn_adam_steplr, bn_dropout_adamw_onecycle, tanh_sgd_cosine, lstm_rmsprop_exponential,
           seed001_experiment1]


def _train(config, policy: str | None, batch: int = 32):
    torch.manual_seed(0)
    model, opt, sched, x, y, loss_fn = config()
    guard = trainguard.Guard(model, opt, policy=policy, scheduler=sched) if policy else None
    n = len(x)
    for step in range(STEPS):
        if step % (n // batch) == 0:
            perm = torch.randperm(n)
        idx = perm[(step % (n // batch)) * batch:][:batch]
        opt.zero_grad()
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        if guard is not None:
            guard.step(loss, batch_size=batch)
        else:
            opt.step()
        if sched is not None:
            sched.step()
    if guard is not None:
        guard.close()
    return model, guard


@functools.cache
def _unguarded_weights(config) -> dict[str, torch.Tensor]:
    return _train(config, None)[0].state_dict()


@pytest.mark.parametrize("policy", ["auto", "safe"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.__name__)
def test_healthy_run_is_bitwise_untouched(config, policy):
    bare = _unguarded_weights(config)
    guarded, guard = _train(config, policy)
    assert guard.actions == []
    for (name, a), b in zip(bare.items(), guarded.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs under policy={policy}"


def test_the_comparison_sees_a_policy_that_does_act():
    clipped, guard = _train(mlp_sgd_momentum, trainguard.policies.clip_global_norm(1e-3))
    assert guard.actions and guard.actions[0].kind == "clip"
    bare = _unguarded_weights(mlp_sgd_momentum)
    assert not all(torch.equal(a, b) for a, b in zip(bare.values(), clipped.state_dict().values()))


# Issue 11, F12: long healthy Adam/AdamW runs, ordinary gradient noise over 3,000 steps. The previous default clip
# (ZClip z=4, 3x the EMA mean) clipped seed 1 at step 1198 (Adam and AdamW), seed 13 at steps 2680 and 2719.
F12_STEPS = 3000


def _f12_run(seed: int, optimizer, guarded: bool):
    """MLP 8-32-1, lr 1e-3, fresh Gaussian batches of 32, a noisy linear target; plain ``Guard(model, opt)``."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    opt = optimizer(model.parameters(), lr=1e-3)
    w = torch.randn(8, 1)
    xs = torch.randn(F12_STEPS, 32, 8)
    ys = xs @ w + 0.5 * torch.randn(F12_STEPS, 32, 1)
    guard = trainguard.Guard(model, opt) if guarded else None
    for x, y in zip(xs, ys):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        if guard is not None:
            guard.step(loss, batch_size=32)
        else:
            opt.step()
    if guard is not None:
        guard.close()
    return model, guard


@pytest.mark.parametrize("optimizer", [torch.optim.Adam, torch.optim.AdamW], ids=lambda o: o.__name__)
@pytest.mark.parametrize("seed", [1, 13])
def test_long_healthy_adam_runs_are_bitwise_untouched_by_the_default_policy(seed, optimizer):
    bare, _ = _f12_run(seed, optimizer, guarded=False)
    guarded, guard = _f12_run(seed, optimizer, guarded=True)
    assert guard.actions == [], [(a.kind, a.step, a.reason, a.params) for a in guard.actions]
    for (name, a), b in zip(bare.state_dict().items(), guarded.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs under the default policy"
