"""DLRM's MLP initialization draws biases from N(0, 1/m); the one-unit output layer can start with a large negative
bias, its ReLU outputs 0 for every input and no gradient reaches any layer.

Source: https://github.com/pytorch/benchmark/pull/1927 ("changed to proper Xavier initialization, existing
implementation was resulting in a large negative bias, which was killing all gradients through the following relu")
and upstream https://github.com/facebookresearch/dlrm/pull/358. DLRM's ``create_mlp`` draws each layer's weights
from N(0, sqrt(2/(m+n))) and its bias from N(0, sqrt(1/m)), m the layer's output size, so the top MLP's last layer
(m = 1) gets a bias of standard deviation 1.
Symptom (the PR's run): every output ``gen`` is 0 (``grad_fn=<ReluBackward0>``), the loss sits at 0.34 and "derivative
with respect to first linear layer: tensor([[0., 0., 0., ..."; training does not move.
Fix (the PRs): biases initialized to zero, as Xavier initialization does; nothing else changes.

Here: a DLRM - bottom MLP 13-64-16 on dense features, 4 embedding tables of 16-d vectors for sparse features,
pairwise dot-product interactions, top MLP 22-64-1 with ReLU after every layer as in the benchmark - trained on
synthetic click data with MSE and SGD(lr=0.01), batch 128, 800 steps. Seed 10 draws the output bias at -2.07.
Measured (unguarded, one thread): faulty: every output 0, the loss stays at the share of positives (0.30 at
step 0, 0.276 at the end, 27.5% positives); fixed: 0.26 -> 0.160 (mean of the last 10% of steps; predicting
the mean would give 0.20).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._torch_common import minibatches, tail_mean

CASE = Case(name="torch_dlrm1927_negative_bias_relu", kind="faulty", cause="dead_relu", framework="torch",
            source="https://github.com/pytorch/benchmark/pull/1927 (DLRM bias init kills all gradients via ReLU)",
            symptom="all outputs 0 through the last ReLU, loss flat at 0.34, first-layer gradients exactly 0",
            fix="zero bias initialization (Xavier) instead of N(0, 1/m)")

TABLES, ROWS, DIM = 4, 50, 16


def _mlp(sizes: list[int], zero_bias: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for n, m in zip(sizes, sizes[1:]):
        layer = nn.Linear(n, m)
        with torch.no_grad():  # DLRM's create_mlp
            layer.weight.copy_(torch.from_numpy(np.random.normal(0.0, np.sqrt(2 / (m + n)), size=(m, n))))
            bias = np.zeros(m) if zero_bias else np.random.normal(0.0, np.sqrt(1 / m), size=m)
            layer.bias.copy_(torch.from_numpy(bias))
        layers += [layer, nn.ReLU()]
    return nn.Sequential(*layers)


class DLRM(nn.Module):
    def __init__(self, zero_bias: bool) -> None:
        super().__init__()
        self.bottom = _mlp([13, 64, DIM], zero_bias)
        self.tables = nn.ModuleList(nn.EmbeddingBag(ROWS, DIM, mode="sum") for _ in range(TABLES))
        for table in self.tables:  # DLRM's create_emb: uniform in +-sqrt(1 / rows)
            nn.init.uniform_(table.weight, -np.sqrt(1 / ROWS), np.sqrt(1 / ROWS))
        n_feat = TABLES + 1
        self.top = _mlp([DIM + n_feat * (n_feat - 1) // 2, 64, 1], zero_bias)

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        feats = [self.bottom(dense)] + [t(sparse[:, i:i + 1]) for i, t in enumerate(self.tables)]
        z = torch.stack(feats, dim=1)
        dots = torch.bmm(z, z.transpose(1, 2))
        i, j = torch.tril_indices(len(feats), len(feats), offset=-1)
        return self.top(torch.cat([feats[0], dots[:, i, j]], dim=1))


def run(ctx: RunContext) -> Outcome:
    seeded(10)  # a seed whose N(0, 1) output bias comes out large and negative (-2.07), as in the report
    model = DLRM(zero_bias=ctx.fixed)
    rng = np.random.default_rng(1)
    dense = rng.lognormal(size=(6400, 13)).astype(np.float32)
    dense = np.log1p(dense)  # DLRM's log transform of the dense counts
    sparse = rng.integers(0, ROWS, size=(6400, TABLES))
    logit = dense[:, 0] - dense[:, 1] + (sparse[:, 0] < 10) - 0.9
    clicks = (rng.random(6400) < 1 / (1 + np.exp(-2 * logit))).astype(np.float32)[:, None]
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    criterion = nn.MSELoss()
    guard = ctx.torch_guard(model, opt)
    losses = []
    for step, (d, s, c) in enumerate(minibatches([dense, sparse, clicks], 128, epochs=16, seed=2)):
        opt.zero_grad()
        loss = criterion(model(d, s), c)
        loss.backward()
        ctx.torch_step(guard, opt, loss, inputs=d, targets=c)
        losses.append(loss.item())
        ctx.log_scalar(step, loss=losses[-1], lr=0.01)
    ctx.close(guard)
    return ctx.outcome(tail_mean(losses), model=model, steps=len(losses), first_loss=losses[0],
                       positive_rate=float(clicks.mean()), output_bias=model.top[-2].bias.item())
