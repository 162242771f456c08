"""A loss summed over the batch and the outputs (``reduction="sum"``, as pytorch/examples' VAE writes it) starts
orders of magnitude above a mean loss's trivial level; on inputs the guard measured on unit scale that is the
loss's reduction, not unscaled data: at most a candidate, never a confident cause (rules/data.py)."""
from __future__ import annotations

import torch
from torch import nn

import trainguard

torch.set_num_threads(1)


def test_a_summed_bce_autoencoder_on_unit_scale_pixels_gets_no_confident_unscaled_data():
    torch.manual_seed(0)
    codes = torch.rand(512, 8)
    x = torch.sigmoid(codes @ torch.randn(8, 256) * 2)  # pixels in (0, 1)
    model = nn.Sequential(nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 256), nn.Sigmoid())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    guard = trainguard.Guard(model, optimizer, policy="observe")
    losses = []
    for step in range(150):
        batch = x[step * 64 % 512: step * 64 % 512 + 64]
        optimizer.zero_grad()
        loss = nn.functional.binary_cross_entropy(model(batch), batch, reduction="sum")
        loss.backward()
        guard.step(loss, inputs=batch)
        losses.append(loss.item())
    guard.close()
    assert losses[0] > 1e4 and losses[-1] < 0.9 * losses[0]  # summed over 64 x 256 outputs, and it learns
    causes = {c.code: c.confidence for c in guard.diagnose()}
    assert causes.get("unscaled_data", 0.0) < 0.6
