"""A CNN with BatchNorm and dropout, trained with Adadelta(lr=1.0) and StepLR(gamma=0.7) per epoch.

Recipe: the PyTorch MNIST example (https://github.com/pytorch/examples/blob/main/mnist/main.py: two conv layers,
max-pooling, ``Dropout(0.25)`` and ``Dropout(0.5)``, log-softmax + NLL loss, ``Adadelta(lr=1.0)``,
``StepLR(step_size=1, gamma=0.7)`` stepped each epoch, batch 64), with BatchNorm after each convolution as most
adaptations add. Here 1x16x16 images of 10 noisy shifted templates, 3,000 training images, 6 epochs (276 steps), the
example's channel counts halved (16, 32).
Dropout makes the training loss noisier than the held-out loss, and the held-out loss sits below it.

Measured (unguarded, one thread, 5.1 s): training loss 2.17 over the first 10 batches (ln 10 = 2.30) -> 0.54 (last
10%); held-out loss per epoch 0.70, 0.59, 0.52, 0.51, 0.49, 0.49; held-out accuracy 0.83 (chance 0.10).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.healthy._common import Batches, pattern_images, tail_mean

CASE = Case(name="torch_cnn_dropout_bn", kind="healthy", cause=None, framework="torch",
            source="https://github.com/pytorch/examples/blob/main/mnist/main.py (Adadelta 1.0, StepLR 0.7, dropout)",
            symptom="none: dropout-noisy training loss above the held-out loss; LR x0.7 each epoch")

CLASSES, EPOCHS, BATCH = 10, 6, 64


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    x, y = pattern_images(4000, CLASSES, seed=151, noise=1.2)
    x_train, y_train = x[:3000], y[:3000]
    x_test, y_test = torch.from_numpy(x[3000:]), torch.from_numpy(y[3000:])
    model = nn.Sequential(nn.Conv2d(1, 16, 3), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.Conv2d(16, 32, 3), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25),
                          nn.Flatten(), nn.Linear(32 * 6 * 6, 128), nn.ReLU(), nn.Dropout(0.5),
                          nn.Linear(128, CLASSES), nn.LogSoftmax(dim=1))
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    batches = Batches((x_train, y_train), BATCH, seed=152)
    guard = ctx.torch_guard(model, opt, scheduler=sched)
    losses, test_losses, step = [], [], 0
    for epoch in range(EPOCHS):
        model.train()
        for _ in range(len(x_train) // BATCH):
            xb, yb = (torch.from_numpy(a) for a in batches.next())
            opt.zero_grad()
            loss = nn.functional.nll_loss(model(xb), yb)
            loss.backward()
            ctx.torch_step(guard, opt, loss, inputs=xb, targets=yb, epoch=epoch)
            losses.append(loss.item())
            ctx.log_scalar(step, loss=losses[-1], lr=opt.param_groups[0]["lr"])
            step += 1
        sched.step()
        model.eval()
        with torch.no_grad():
            test_losses.append(nn.functional.nll_loss(model(x_test), y_test).item())
    ctx.close(guard)
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    return ctx.outcome(test_losses[-1], model=model, steps=step, first_loss=float(np.mean(losses[:10])),
                       trivial_loss=math.log(CLASSES), train_tail=tail_mean(losses),
                       test_losses=[round(v, 4) for v in test_losses], test_accuracy=accuracy)
