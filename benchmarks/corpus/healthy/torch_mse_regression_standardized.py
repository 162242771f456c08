"""Tabular regression on standardized inputs and target: an MLP with MSE, SGD with momentum, batch 16.

Recipe: the standard tabular-regression recipe (e.g. the PyTorch "Learning PyTorch with Examples" regression and
scikit-learn's ``StandardScaler`` preprocessing advice, https://scikit-learn.org/stable/modules/preprocessing.html
#standardization-or-mean-removal-and-variance-scaling): features and target scaled to zero mean and unit variance,
an MLP 8-64-64-1 with tanh, ``nn.MSELoss``, SGD lr 0.01 momentum 0.9, batch 16, 40 epochs over 1,600 rows (4,000
steps). With the target standardized, the trivial predictor's MSE is 1; batch-16 MSE is noisy (the per-batch
loss varies several-fold around its mean).

Measured (unguarded, one thread, 2.4 s): training MSE 0.69 over the first 10 batches -> 0.19 (last 10%, batch
losses 0.09-0.30 between the 5th and 95th percentiles); held-out MSE 0.20 against 0.91 for the trivial predictor
(the held-out targets' variance) and 0.47 for least squares.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.healthy._common import Batches, regression_data, tail_mean

CASE = Case(name="torch_mse_regression_standardized", kind="healthy", cause=None, framework="torch",
            source="https://scikit-learn.org/stable/modules/preprocessing.html (standardization); MLP + MSE + SGD",
            symptom="none: noisy batch-16 MSE around a slowly falling mean; trivial MSE 1")

STEPS, BATCH = 4000, 16


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    x, y = regression_data(2000, 8, seed=171, noise=0.4)
    x_train, y_train = x[:1600], y[:1600, None]
    x_test, y_test = torch.from_numpy(x[1600:]), torch.from_numpy(y[1600:, None])
    model = nn.Sequential(nn.Linear(8, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batches = Batches((x_train, y_train), BATCH, seed=172)
    guard = ctx.torch_guard(model, opt)
    losses = []
    for step in range(STEPS):
        xb, yb = (torch.from_numpy(a) for a in batches.next())
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(xb), yb)
        loss.backward()
        ctx.torch_step(guard, opt, loss, inputs=xb, targets=yb)
        losses.append(loss.item())
        ctx.log_scalar(step, loss=losses[-1])
    ctx.close(guard)
    with torch.no_grad():
        test_mse = nn.functional.mse_loss(model(x_test), y_test).item()
        linear = torch.linalg.lstsq(torch.cat([torch.from_numpy(x_train), torch.ones(1600, 1)], 1),
                                    torch.from_numpy(y_train)).solution
        linear_mse = nn.functional.mse_loss(torch.cat([x_test, torch.ones(400, 1)], 1) @ linear, y_test).item()
    tail = losses[-STEPS // 10:]
    return ctx.outcome(test_mse, model=model, steps=STEPS, first_loss=float(np.mean(losses[:10])),
                       trivial_loss=float(y_test.var()), train_tail=tail_mean(losses), linear_model_mse=linear_mse,
                       tail_batch_loss_p5_p95=(float(np.percentile(tail, 5)), float(np.percentile(tail, 95))))
