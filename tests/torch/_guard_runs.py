"""Small real training runs shared by the guard tests: seed 003's MLP and a loop that runs guarded or bare."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from trainguard.scenarios.exploding_gradient import make_regression as scenario_data


def make_regression() -> tuple[torch.Tensor, torch.Tensor]:
    """Seed 003's data (the scenario's make_regression: targets on a scale of hundreds) as tensors."""
    x, y = scenario_data()
    return torch.from_numpy(x), torch.from_numpy(y).unsqueeze(1)


def seed003_data(standardized: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = make_regression()
    x, y = x[:500], y[:500]
    if standardized:
        y = (y - y.mean()) / y.std()
    return x, y


def seed003_model(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer]:
    """MLP 20 -> 25 (ReLU, he_uniform) -> 1 with SGD lr 0.01 momentum 0.9 (seed 003)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(20, 25), nn.ReLU(), nn.Linear(25, 1))
    nn.init.kaiming_uniform_(model[0].weight, nonlinearity="relu")
    nn.init.zeros_(model[0].bias)
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def train(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, *,
          epochs: int, batch: int = 32, guard=None, loss_fn: Callable = nn.functional.mse_loss,
          pass_data: bool = True, stop_on_nan: bool = True, seed: int = 0,
          alter_batch: Callable[[int, torch.Tensor], torch.Tensor] | None = None) -> int:
    """Minibatch training on in-memory tensors; ``guard.step`` replaces ``optimizer.step`` when a guard is
    given. Returns the number of steps taken."""
    generator = torch.Generator().manual_seed(seed)
    step = 0
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            xb, yb = x[idx], y[idx]
            if alter_batch is not None:
                xb = alter_batch(step, xb)
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            if guard is None:
                optimizer.step()
            elif pass_data:
                guard.step(loss, batch_size=len(xb), inputs=xb, targets=yb, epoch=epoch)
            else:
                guard.step(loss, batch_size=len(xb))
            step += 1
            if stop_on_nan and not torch.isfinite(loss):
                return step
    return step


def same_tensors(a: nn.Module, b: nn.Module) -> bool:
    """Parameters and buffers bitwise equal (NaN equal to NaN)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        torch.equal(sa[k], sb[k]) or (sa[k].is_floating_point() and torch.equal(sa[k].isnan(), sb[k].isnan())
                                      and torch.equal(sa[k].nan_to_num(), sb[k].nan_to_num()))
        for k in sa)
