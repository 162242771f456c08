"""One-cycle policy with a high peak: SGD through ``OneCycleLR(max_lr=1.0)`` on a BatchNorm CNN, 600 steps.

Recipe: Smith & Topin, "Super-Convergence: Very Fast Training of Neural Networks Using Large Learning Rates" (2018,
https://arxiv.org/abs/1708.07120; the peak LR 1-3 for SGD on BatchNorm networks, momentum cycled 0.95 -> 0.85 ->
0.95), as ``torch.optim.lr_scheduler.OneCycleLR`` implements it (fastai's two phases, stepped every batch,
https://docs.pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.OneCycleLR.html). Here max_lr 1.0 (25x
the starting 0.04, then annealed to 4e-6), weight decay 5e-4, batch 64, on 1x16x16 images of 8 noisy templates.
Around the peak the loss is noisy and rises for a while; the annealing phase brings it far below.

Measured (unguarded, one thread, 4.5 s CPU): training loss 1.97 over the first 10 batches (ln 8 = 2.08) -> 0.074
(mean of the last 10% of steps), with batches up to 1.41 within 60 steps of the peak; held-out accuracy 0.91
(chance 0.125).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.healthy._common import Batches, pattern_images, tail_mean
from benchmarks.corpus.healthy._torch_loop import train_supervised

CASE = Case(name="torch_onecycle_high_peak", kind="healthy", cause=None, framework="torch",
            source="Smith & Topin, Super-Convergence (2018), arXiv:1708.07120; torch OneCycleLR docs",
            symptom="none: LR 0.04 -> 1.0 -> 4e-6 over 600 steps; loss noisy and rising near the peak")

CLASSES, STEPS = 8, 600


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    x, y = pattern_images(3000, CLASSES, seed=11, noise=1.0)
    x_train, y_train = x[:2400], y[:2400]
    x_test, y_test = torch.from_numpy(x[2400:]), torch.from_numpy(y[2400:])
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1, stride=2), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, CLASSES))
    opt = torch.optim.SGD(model.parameters(), lr=0.04, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=STEPS)
    batches = Batches((x_train, y_train), 64, seed=12)
    loss_fn = nn.CrossEntropyLoss()
    guard = ctx.torch_guard(model, opt, scheduler=sched)
    losses = train_supervised(ctx, guard, model, opt, loss_fn, batches, STEPS, sched)
    ctx.close(guard)
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    peak = int(0.3 * STEPS)
    return ctx.outcome(tail_mean(losses), model=model, steps=STEPS, first_loss=sum(losses[:10]) / 10,
                       trivial_loss=math.log(CLASSES), test_accuracy=accuracy,
                       loss_max_near_peak=max(losses[peak - 60:peak + 60]))
