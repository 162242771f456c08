"""Polynomial regression with raw features [1, x, x^2], plain gradient descent: the loss grows to 1e21.

Source: https://stackoverflow.com/q/66143829 ("Pytorch Linear Regression with squared features"). The reporter fits
y = x^2 with a hand-written linear model on the features psi = [1, x, x^2] of x = 1..5 (then 10 points), weights
initialized to 0.5, ``w -= 0.01 * w.grad`` for 30 iterations.
Symptom: "the loss increases permanently": 25.45 at iteration 0, 2.1e11 at 10, 1.8e21 at 20; the weights reach 1e9.
Accepted answer (Ivan): "You should normalize your data" (and keep the constant as the bias). The fixed twin
standardizes the x and x^2 columns with their mean and std; the constant column, the targets, the learning rate and
everything else stay. The SGD optimizer at lr 0.01 takes the reporter's exact step (``w -= lr * w.grad``).

Here: the reporter's 10 points x = 1..10, 2,000 iterations of full-batch gradient descent on the MSE.
Measured (unguarded, one thread): faulty: loss 475 at step 0, then inf and nan -> final nan; fixed:
final loss 1.9 (mean of the last 10% of steps), var(y) = 1.1e3.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._torch_common import tail_mean

CASE = Case(name="torch_so66143829_squared_features", kind="faulty", cause="unscaled_data", framework="torch",
            source="https://stackoverflow.com/q/66143829 (Pytorch Linear Regression with squared features)",
            symptom="loss grows every iteration: 25 -> 2e11 -> 1.8e21, weights 1e9",
            fix="standardize the x and x^2 feature columns (accepted answer: normalize your data)")

STEPS, LR = 2000, 0.01


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    x = np.arange(1, 11, dtype=np.float64)
    features = np.stack([np.ones_like(x), x, x ** 2], axis=1)
    if ctx.fixed:
        cols = features[:, 1:]
        features[:, 1:] = (cols - cols.mean(axis=0)) / cols.std(axis=0)
    psi = torch.tensor(features, dtype=torch.float32)
    y = torch.tensor(x ** 2, dtype=torch.float32).unsqueeze(1)
    model = nn.Linear(3, 1, bias=False)  # the reporter's w, a (3, 1) tensor of 0.5
    nn.init.constant_(model.weight, 0.5)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    guard = ctx.torch_guard(model, opt)
    losses = []
    for step in range(STEPS):
        opt.zero_grad()
        loss = ((y - model(psi)) ** 2).mean()
        loss.backward()
        ctx.torch_step(guard, opt, loss, inputs=psi, targets=y)
        losses.append(loss.item())
        ctx.log_scalar(step, loss=losses[-1], lr=LR)
    ctx.close(guard)
    return ctx.outcome(tail_mean(losses), model=model, steps=STEPS, first_loss=losses[0],
                       target_variance=float(y.var(unbiased=False)))
