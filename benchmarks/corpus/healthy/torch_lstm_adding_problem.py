"""An LSTM on the adding problem: a long plateau at the trivial MSE, then a sudden drop once it finds the markers.

Recipe: the adding problem of Hochreiter & Schmidhuber, "Long Short-Term Memory" (Neural Computation 1997,
experiment 4) in the form used by Le et al. 2015 (https://arxiv.org/abs/1504.00941) and Arjovsky et al. 2016: each
input step is (a uniform number, a marker), exactly two steps are marked, the target is the sum of the two marked
numbers; predicting the mean (1.0) gives MSE 1/6 = 0.167. ``nn.LSTM`` (hidden 64) + a linear read-out, Adam 1e-3,
``clip_grad_norm_(1.0)``, batch 32, sequences of 20 steps, 1,500 steps. The loss sits near 0.167 for several hundred
steps and then falls by an order of magnitude.

Measured (unguarded, one thread, 5.6 s): training MSE 1.13 over the first 10 batches; mean per 100 steps 0.31, 0.168,
0.159, 0.157, 0.149, 0.154, 0.146, 0.129, 0.105, 0.066, 0.055, 0.043, 0.031, 0.036, 0.026; held-out MSE 0.019 on
1,000 fresh sequences against 0.167 for the trivial predictor.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.healthy._common import tail_mean

CASE = Case(name="torch_lstm_adding_problem", kind="healthy", cause=None, framework="torch",
            source="Hochreiter & Schmidhuber 1997 (LSTM), experiment 4; Le et al. 2015, arXiv:1504.00941",
            symptom="none: loss flat at the trivial 0.167 for hundreds of steps, then a sudden drop")

STEPS, BATCH, LENGTH = 1500, 32, 20


def adding_batch(rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    values = rng.uniform(0.0, 1.0, (n, LENGTH))
    markers = np.zeros((n, LENGTH))
    first = rng.integers(0, LENGTH // 2, n)
    second = rng.integers(LENGTH // 2, LENGTH, n)
    markers[np.arange(n), first] = 1.0
    markers[np.arange(n), second] = 1.0
    x = np.stack([values, markers], axis=2).astype(np.float32)
    y = (values * markers).sum(axis=1, keepdims=True).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


class AddingLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(2, 64, batch_first=True)
        self.readout = nn.Linear(64, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.readout(out[:, -1])


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    rng = np.random.default_rng(161)
    model = AddingLSTM()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    guard = ctx.torch_guard(model, opt)
    losses = []
    for step in range(STEPS):
        xb, yb = adding_batch(rng, BATCH)
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(xb), yb)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        ctx.torch_step(guard, opt, loss, inputs=xb, targets=yb)
        losses.append(loss.item())
        ctx.log_scalar(step, loss=losses[-1])
    ctx.close(guard)
    xt, yt = adding_batch(np.random.default_rng(162), 1000)
    with torch.no_grad():
        test_mse = nn.functional.mse_loss(model(xt), yt).item()
    curve = [round(float(np.mean(losses[s:s + 100])), 4) for s in range(0, STEPS, 100)]
    return ctx.outcome(test_mse, model=model, steps=STEPS, first_loss=float(np.mean(losses[:10])),
                       trivial_loss=1 / 6, train_tail=tail_mean(losses), loss_per_100_steps=curve)
