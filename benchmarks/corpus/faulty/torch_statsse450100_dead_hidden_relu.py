"""A one-hidden-unit ReLU classifier on two always-positive features, whose hidden unit starts with both weights
negative: the unit outputs 0 for every instance, gets no gradient, and every instance lands in one class.

Source: https://stats.stackexchange.com/questions/450100 ("Understanding ReLU: does this unlucky initialized
network assign all instances to the same class?"). The asker's network: 2 inputs (two features that are always
positive), 1 hidden neuron with ReLU initialized uniform(-0.05, 0.05), 1 sigmoid output neuron; binary
classification.
Symptom (the asker's reasoning, confirmed by the accepted answer): with both hidden weights negative the hidden
neuron outputs 0 for all instances, so the output is sigmoid(b) and "all instances are assigned to class 1" (or
0). Answer: "once the neuron parameters are pushed out of the data region, they're dead forever. This is dying
ReLU problem"; fix: "standardising your data so that it consist of both positive and negative values".
Fix here: the features standardized (mean 0, std 1 per feature, from the training set), nothing else.

Here: 2,000 instances with features uniform in [1, 10], class 1 when their sum is below 11 (balanced); the
network as asked (weights uniform(-0.05, 0.05), biases 0, as Keras initializes them), the draw where both hidden
weights are negative (torch seed 3: -0.050, -0.039); binary cross-entropy, Adam(lr=0.01), batch 32, 30 epochs.
Measured (unguarded, one thread): faulty: loss 0.693 throughout (the hidden unit's gradient is exactly 0; the
output bias alone fits the class prior), final 0.693; fixed: 0.693 -> 0.032 (mean of the last 10% of steps; the
unit is active on 58% of the instances at the end, 0% in the faulty run).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._torch_common import minibatches, tail_mean

CASE = Case(name="torch_statsse450100_dead_hidden_relu", kind="faulty", cause="dead_relu", framework="torch",
            source="https://stats.stackexchange.com/questions/450100 (unlucky initialized ReLU network assigns all "
                   "instances to the same class)",
            symptom="the only hidden ReLU outputs 0 for every instance; all instances get the same class",
            fix="standardize the features so they take both signs (the accepted answer)")

INIT_SEED, EPOCHS, BATCH, LR = 3, 30, 32, 0.01


def make_data(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.uniform(1.0, 10.0, size=(n, 2))
    y = (x.sum(axis=1) < 11.0).astype(np.float32)[:, None]
    return x.astype(np.float32), y


def build_model() -> nn.Module:
    torch.manual_seed(INIT_SEED)
    model = nn.Sequential(nn.Linear(2, 1), nn.ReLU(), nn.Linear(1, 1))
    for layer in (model[0], model[2]):
        nn.init.uniform_(layer.weight, -0.05, 0.05)
        nn.init.zeros_(layer.bias)
    return model


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    x, y = make_data(2000)
    if ctx.fixed:
        x = (x - x.mean(axis=0)) / x.std(axis=0)
    model = build_model()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    criterion = nn.BCEWithLogitsLoss()
    guard = ctx.torch_guard(model, opt)
    losses = []
    for step, (xb, yb) in enumerate(minibatches([x, y], BATCH, epochs=EPOCHS, seed=2)):
        opt.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        ctx.torch_step(guard, opt, loss, inputs=xb, targets=yb)
        losses.append(loss.item())
        ctx.log_scalar(step, loss=losses[-1], lr=LR)
    ctx.close(guard)
    with torch.no_grad():
        hidden_active = float((model[1](model[0](torch.from_numpy(x))) > 0).float().mean())
    return ctx.outcome(tail_mean(losses), model=model, steps=len(losses), first_loss=losses[0],
                       hidden_active_fraction=hidden_active)
