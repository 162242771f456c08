"""The two seed set-ups of the repair acceptance tests, trained for real (a second or two each on one core)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trainguard.scenarios.exploding_gradient import make_regression as scenario_data

import trainguard


def make_regression() -> tuple[torch.Tensor, torch.Tensor]:
    """Seed 003's 500 training samples (the scenario's make_regression: targets on a scale of hundreds)."""
    x, y = scenario_data()
    return torch.from_numpy(x[:500]), torch.from_numpy(y[:500]).unsqueeze(1)


def seed003(policy=None, epochs: int = 50, clip_by_hand: float | None = None, log=None, on_step=None):
    """Seed 003: MLP 20 -> 25 (ReLU, he_uniform) -> 1, SGD lr 0.01 momentum 0.9, 500 samples, batch 32.
    Returns (final training MSE, model, guard)."""
    x, y = make_regression()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 25), nn.ReLU(), nn.Linear(25, 1))
    nn.init.kaiming_uniform_(model[0].weight, nonlinearity="relu")
    nn.init.zeros_(model[0].bias)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    guard = trainguard.Guard(model, opt, policy=policy, log=log) if policy else None
    for _ in range(epochs):
        perm = torch.randperm(500)
        for i in range(0, 500, 32):
            idx = perm[i:i + 32]
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x[idx]), y[idx])
            loss.backward()
            if clip_by_hand is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_by_hand)
            if guard is not None:
                guard.step(loss, batch_size=len(idx))
                if on_step is not None:
                    on_step(guard, model, opt)
            else:
                opt.step()
    if guard is not None:
        guard.close()
    with torch.no_grad():
        return nn.functional.mse_loss(model(x), y).item(), model, guard


def seed001_experiment2(policy=None, epochs: int = 20, log=None):
    """Seed 001, experiment 2: x = 100 points in [0, 4], y = x, inputs x + N(0, 0.1); Linear(1, 32) ->
    Linear(32, 1), no activation; SGD lr 0.1; batch 20. Returns (final MSE, first non-finite step or None, guard)."""
    rng = np.random.RandomState(0)
    xs = np.linspace(0, 4, 100, dtype=np.float32)
    inputs = torch.tensor(xs + rng.normal(0, 0.1, xs.shape).astype(np.float32)).unsqueeze(1)
    targets = torch.tensor(xs).unsqueeze(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 32), nn.Linear(32, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    guard = trainguard.Guard(model, opt, policy=policy, log=log) if policy else None
    first_nan, step = None, 0
    for _ in range(epochs):
        perm = torch.randperm(100)
        for i in range(0, 100, 20):
            idx = perm[i:i + 20]
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(inputs[idx]), targets[idx])
            loss.backward()
            if first_nan is None and not torch.isfinite(loss):
                first_nan = step
            if guard is not None:
                guard.step(loss, batch_size=len(idx))
            else:
                opt.step()
            step += 1
    if guard is not None:
        guard.close()
    with torch.no_grad():
        return nn.functional.mse_loss(model(inputs), targets).item(), first_nan, guard


def sampled_run(model, optimizer, x, y, loss_fn, policy, *, batch: int, steps: int, tail: int):
    """Guarded minibatch training on random batches (fixed order): the median loss of the last ``tail`` steps
    and the closed guard."""
    guard = trainguard.Guard(model, optimizer, policy=policy)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=generator)
        optimizer.zero_grad()
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        guard.step(loss)
        losses.append(loss.item())
    guard.close()
    return float(np.median(losses[-tail:])), guard


class WrappedLinear(nn.Module):
    """A Linear inside its own module: ReDo's executor finds no Linear/Conv right before the next ReLU."""

    def __init__(self, inputs: int, outputs: int):
        super().__init__()
        self.linear = nn.Linear(inputs, outputs)

    def forward(self, x):
        return self.linear(x)


def dead_hidden_relu(policy, *, wrapped: bool = False, log=None):
    """stats.stackexchange.com/questions/450100: one hidden ReLU, positive features, both incoming weights negative
    (the unit is dead from the start); Adam, 15 epochs of 63 batches. The model, the closed guard (None
    unguarded) and the losses."""
    rng = np.random.default_rng(1)
    x = rng.uniform(1.0, 10.0, size=(2000, 2)).astype(np.float32)
    x, y = torch.tensor(x), torch.tensor((x.sum(1) < 11.0).astype(np.float32)[:, None])
    torch.manual_seed(3)
    first = WrappedLinear(2, 1) if wrapped else nn.Linear(2, 1)
    model = nn.Sequential(first, nn.ReLU(), nn.Linear(1, 1))
    linear = first.linear if wrapped else first
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[-0.05, -0.039]]))
        linear.bias.zero_()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    guard = trainguard.Guard(model, optimizer, policy=policy, log=log) if policy is not None else None
    generator = torch.Generator().manual_seed(2)
    losses = []
    for _ in range(15):
        order = torch.randperm(2000, generator=generator)
        for i in range(0, 2000, 32):
            idx = order[i:i + 32]
            optimizer.zero_grad()
            loss = nn.functional.binary_cross_entropy_with_logits(model(x[idx]), y[idx])
            loss.backward()
            guard.step(loss) if guard is not None else optimizer.step()
            losses.append(loss.item())
    if guard is not None:
        guard.close()
    return model, guard, losses


def full_batch_run(steps: int, policy, seed: int = 0, momentum: float = 0.0):
    """Full-batch SGD on a small tanh regression: the model and the closed guard (None unguarded)."""
    torch.manual_seed(seed)
    x = torch.randn(64, 6)
    y = x @ torch.randn(6, 1)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=momentum)
    guard = trainguard.Guard(model, optimizer, policy=policy) if policy is not None else None
    for _ in range(steps):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        guard.step(loss) if guard is not None else optimizer.step()
    if guard is not None:
        guard.close()
    return model, guard


def train_float16_regression(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                             policy=None, steps: int = 150, batch: int = 32):
    """A float16 model fitted to ``(x, y)`` in batches of ``batch`` (cycling), its MSE taken in float32, under
    ``Guard(policy=policy)`` (unguarded when None). Returns (losses, guard)."""
    x, y = x.half(), y.half()
    guard = trainguard.Guard(model, optimizer, policy=policy) if policy else None
    losses = []
    for step in range(steps):
        rows = slice(step * batch % len(x), step * batch % len(x) + batch)
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x[rows]).float(), y[rows].float())
        loss.backward()
        guard.step(loss) if guard else optimizer.step()
        losses.append(loss.item())
    if guard:
        guard.close()
    return losses, guard
