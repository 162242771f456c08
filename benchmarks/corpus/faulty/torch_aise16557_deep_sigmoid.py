"""Four hidden layers of 500 sigmoid units regressing real values from binary vectors: "unable to learn", high loss
even on the training data.

Source: https://ai.stackexchange.com/q/16557 ("What could be the problem when a neural network with four hidden
layers with the sigmoid activation function is not learning?"). The reporter maps binary vectors to real-valued
outputs with 4 hidden layers of 500 sigmoid units.
Symptom: "The network appears to be unable to learn, and has high loss even on the training data."
Accepted answer (John Doucette): the vanishing gradient - the sigmoid's derivative is at most 0.25, so "by the 4th
layer your signal is at most 0.25^4 = 1/256 the size that it was"; use ReLU activations instead. The fixed twin
swaps the hidden activations to ReLU; nothing else changes.

Here: 64-bit binary inputs, a target that is a smooth nonlinear function of weighted bit sums (standardized), MLP
64-256-256-256-256-1 (the 500 units scaled to 256 for time), SGD(lr=0.05) (the question does not name its
optimizer), batch 64, 500 steps, MSE.
Measured (unguarded, one thread): faulty 1.02 (mean training MSE over the last 10% of steps; var(y) = 1: the
mean predictor); fixed 0.16.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._torch_common import minibatches, tail_mean

CASE = Case(name="torch_aise16557_deep_sigmoid", kind="faulty", cause="vanishing_gradient", framework="torch",
            source="https://ai.stackexchange.com/q/16557 (4 hidden sigmoid layers of 500 units: not learning)",
            symptom="high loss even on the training data; early layers get ~1/256 of the gradient",
            fix="ReLU instead of sigmoid in the hidden layers (accepted answer)")


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    rng = np.random.default_rng(1)
    bits = rng.integers(0, 2, size=(4000, 64)).astype(np.float32)
    proj = rng.normal(size=(64, 3)) / 4
    z = bits @ proj
    target = np.sin(z[:, 0]) + z[:, 1] * z[:, 2]
    target = ((target - target.mean()) / target.std()).astype(np.float32)[:, None]
    act = nn.ReLU if ctx.fixed else nn.Sigmoid
    sizes, layers = [64, 256, 256, 256, 256], []
    for n_in, n_out in zip(sizes, sizes[1:]):
        layers += [nn.Linear(n_in, n_out), act()]
    model = nn.Sequential(*layers, nn.Linear(256, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    criterion = nn.MSELoss()
    guard = ctx.torch_guard(model, opt)
    losses = []
    for step, (xb, yb) in enumerate(minibatches([bits, target], 64, epochs=10, seed=2)):
        if step == 500:
            break
        opt.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        ctx.torch_step(guard, opt, loss, inputs=xb, targets=yb)
        losses.append(loss.item())
        ctx.log_scalar(step, loss=losses[-1], lr=0.05)
    ctx.close(guard)
    return ctx.outcome(tail_mean(losses), model=model, steps=len(losses))
