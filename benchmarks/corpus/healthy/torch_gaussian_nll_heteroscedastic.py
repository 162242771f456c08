"""Heteroscedastic regression with ``nn.GaussianNLLLoss``: the network predicts a mean and a variance; the loss,
0.5 * (log var + (y - mean)^2 / var), is negative whenever the predicted variances are small and right.

Recipe: Nix & Weigend, "Estimating the mean and variance of the target probability distribution" (1994) and the
mean-variance networks of Lakshminarayanan et al., "Deep Ensembles" (NeurIPS 2017, https://arxiv.org/abs/
1612.01474: a Gaussian NLL with a softplus variance head), as ``torch.nn.GaussianNLLLoss`` computes it
(https://docs.pytorch.org/docs/stable/generated/torch.nn.GaussianNLLLoss.html, without the constant term). 1-D
inputs, targets sin(3x) plus noise whose std grows from 0.02 to 0.3 across the input range; an MLP 1-64-64-2,
Adam 2e-3, batch 64, 2,000 steps. The loss is negative from the first steps and keeps falling: a negative
loss is the goal, not a bug.

Measured (unguarded, one thread, 2.8 s): training loss -0.07 over the first 10 batches (negative from step 4) ->
-1.46 (last 10%); held-out NLL -1.48 against +0.20 for the trivial Gaussian (the training targets' mean and
variance); the predicted standard deviations correlate 0.998 with the true noise level, at 0.99x its size.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.healthy._common import Batches, tail_mean

CASE = Case(name="torch_gaussian_nll_heteroscedastic", kind="healthy", cause=None, framework="torch",
            source="https://docs.pytorch.org/docs/stable/generated/torch.nn.GaussianNLLLoss.html; Lakshminarayanan "
                   "et al. 2017 (arXiv:1612.01474) mean-variance network",
            symptom="none: the loss is negative from step 4 on and falls to about -1.5")

STEPS = 2000


def noisy_sine(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, n)
    std = 0.02 + 0.28 * (x + 1.0) / 2.0
    y = np.sin(3.0 * x) + std * rng.normal(size=n)
    return x[:, None].astype(np.float32), y[:, None].astype(np.float32), std.astype(np.float32)


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    x, y, std = noisy_sine(4000, seed=341)
    x_train, y_train = x[:3000], y[:3000]
    x_test, y_test = torch.from_numpy(x[3000:]), torch.from_numpy(y[3000:])
    model = nn.Sequential(nn.Linear(1, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.GaussianNLLLoss()
    batches = Batches((x_train, y_train), 64, seed=342)

    def predict(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = model(inputs)
        return out[:, :1], nn.functional.softplus(out[:, 1:]) + 1e-6

    guard = ctx.torch_guard(model, opt)
    losses = []
    for step in range(STEPS):
        xb, yb = (torch.from_numpy(a) for a in batches.next())
        opt.zero_grad()
        mean, var = predict(xb)
        loss = loss_fn(mean, yb, var)
        loss.backward()
        ctx.torch_step(guard, opt, loss, inputs=xb, targets=yb)
        losses.append(loss.item())
        ctx.log_scalar(step, loss=losses[-1])
    ctx.close(guard)
    with torch.no_grad():
        mean, var = predict(x_test)
        test_nll = loss_fn(mean, y_test, var).item()
        trivial = loss_fn(torch.full_like(y_test, float(y_train.mean())), y_test,
                          torch.full_like(y_test, float(y_train.var()))).item()
        predicted_std = var.sqrt().squeeze(1).numpy()
    true_std = std[3000:]
    return ctx.outcome(test_nll, model=model, steps=STEPS, first_loss=float(np.mean(losses[:10])),
                       trivial_loss=trivial, train_tail=tail_mean(losses),
                       first_negative_step=next((i for i, v in enumerate(losses) if v < 0), -1),
                       std_correlation=float(np.corrcoef(predicted_std, true_std)[0, 1]),
                       mean_std_ratio=float(np.mean(predicted_std / true_std)))
