"""A ReLU layer that is sparse but alive is no repair's business (docs/severity.md: > 50% dead is INFO, the run is
fine): ReDo's trial is proposed on a dead_relu WARNING only (>= 95% dead), even once the loss levels off at its
floor. The corpus' pytorch/examples VAE keeps 67% of its first layer dead and learns."""
from __future__ import annotations

import torch
from torch import nn

import trainguard

torch.set_num_threads(1)


def _sparse_relu_regression(policy: str | None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 1))
    with torch.no_grad():
        model[0].bias[:44] = -20.0  # 44 of 64 units (69%) silent on every input: sparse, not dead
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.randn(1024, 8)
    y = x[:, :1] - 0.5 * x[:, 1:2] + 0.3 * torch.randn(1024, 1)  # noise floor 0.09
    losses = []

    def train(steps, guard=None):
        for step in range(steps):
            rows = slice(step * 64 % 1024, step * 64 % 1024 + 64)
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x[rows]), y[rows])
            loss.backward()
            guard.step(loss) if guard else optimizer.step()
            losses.append(loss.item())

    train(300)  # a run resumed at its floor: the guard's first samples see the loss level off
    guard = trainguard.Guard(model, optimizer, policy=policy) if policy else None
    train(200, guard)
    if guard:
        guard.close()
    return losses, [p.detach().clone() for p in model.parameters()], guard


def test_a_sparse_relu_layer_at_its_loss_floor_gets_no_recycling_under_auto():
    unguarded, weights, _ = _sparse_relu_regression(None)
    assert sum(unguarded[-40:]) / 40 < 0.12  # it learned down to the noise floor
    losses, guarded, guard = _sparse_relu_regression("auto")
    dead = [f for f in guard.findings if f.code == "dead_relu"]
    assert dead and all(f.severity == trainguard.Severity.INFO for f in dead)  # seen, and called sparse
    assert [a.kind for a in guard.actions] == []
    assert losses == unguarded and all(torch.equal(a, b) for a, b in zip(guarded, weights))
