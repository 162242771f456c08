"""Curriculum learning with a switch: a CNN trained on clean, easy images first, then on the full noisy set.

Recipe: Bengio et al., "Curriculum Learning" (ICML 2009, https://dl.acm.org/doi/10.1145/1553374.1553380), the
shape-recognition experiment: train on the easy set (BasicShapes) until a switch epoch, then on the target
distribution (GeomShapes) for the rest of the run. Here the same conv net sees 1x16x16 images of 6 templates with
low pixel noise (0.3) for 400 steps, then the target set with heavy noise (1.4) for 800 steps; SGD momentum 0.9,
lr 0.02, batch 32. At the switch the training loss jumps several-fold (the data got harder, the model did not get
worse) and then comes down again.

Measured (unguarded, one thread, 4.5 s): training loss 1.70 over the first 10 batches (ln 6 = 1.79) -> 0.00046
over the 20 batches before the switch -> 0.79 over the 20 after it -> 0.047 (last 10%); held-out accuracy on the
hard distribution 0.935 (chance 0.17).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.healthy._common import Batches, pattern_images, tail_mean

CASE = Case(name="torch_curriculum_switch", kind="healthy", cause=None, framework="torch",
            source="Bengio et al., Curriculum Learning (ICML 2009), easy-then-target switch epoch",
            symptom="none: the loss jumps several-fold at the switch to the hard distribution, then decreases")

CLASSES, EASY_STEPS, HARD_STEPS = 6, 400, 800


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    # The same templates (same seed) at two noise levels: the curriculum changes the difficulty, not the task.
    x_easy, y_easy = pattern_images(2000, CLASSES, seed=51, noise=0.3)
    x_hard, y_hard = pattern_images(3000, CLASSES, seed=51, noise=1.4)
    x_test, y_test = torch.from_numpy(x_hard[2400:]), torch.from_numpy(y_hard[2400:])
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, CLASSES))
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    easy, hard = Batches((x_easy, y_easy), 32, seed=52), Batches((x_hard[:2400], y_hard[:2400]), 32, seed=53)
    guard = ctx.torch_guard(model, opt)
    losses = []
    for step in range(EASY_STEPS + HARD_STEPS):
        xb, yb = (torch.from_numpy(a) for a in (easy if step < EASY_STEPS else hard).next())
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        ctx.torch_step(guard, opt, loss, inputs=xb, targets=yb)
        losses.append(loss.item())
        ctx.log_scalar(step, loss=losses[-1])
    ctx.close(guard)
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    return ctx.outcome(tail_mean(losses), model=model, steps=len(losses), first_loss=float(np.mean(losses[:10])),
                       trivial_loss=math.log(CLASSES), test_accuracy=accuracy,
                       loss_before_switch=float(np.mean(losses[EASY_STEPS - 20:EASY_STEPS])),
                       loss_after_switch=float(np.mean(losses[EASY_STEPS:EASY_STEPS + 20])))
