"""A face-recognition CNN trained with SGD at lr 0.1 (the documented setting): the loss is NaN; at 0.001 it trains.

Source: https://github.com/BobLiu20/FaceRecognition_PyTorch/issues/2 ("With a learning rate of 0.1, loss is 'nan'.
I don't kown why?"). The reporter trains the repository's face-recognition CNN on CASIA-WebFace (10,575 identities)
with softmax cross-entropy and SGD with momentum at lr 0.1.
Symptom: "with a learning rate of 0.1, loss is 'nan', when I change the learning rate to 0.001, loss changes
normally."
Fix: the reporter's own, lr 0.001 (nothing else changes).

Here: a 3-conv PReLU network without normalization layers (SphereFace-style) on 16x16 face-like images (class
templates plus noise, scaled to mean 0 / std 1 as the repository's loader does), 50 identities, batch 32,
SGD(momentum=0.9, weight_decay=5e-4), 1,500 steps.
Measured (unguarded, one thread): faulty: loss 3.93 -> nan within the first 100 steps, final nan; fixed (lr 0.001):
3.93 (ln 50 = 3.91) -> 0.77 (mean of the last 10% of steps).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._torch_common import minibatches, pattern_images, tail_mean

CASE = Case(name="torch_facerec_lr01_nan", kind="faulty", cause="lr_too_high", framework="torch",
            source="https://github.com/BobLiu20/FaceRecognition_PyTorch/issues/2 (lr 0.1 gives a nan loss)",
            symptom="loss is nan at lr 0.1; at lr 0.001 it decreases normally",
            fix="SGD lr 0.001 instead of 0.1 (the reporter's)")

IDENTITIES, EPOCHS = 50, 15


def _net() -> nn.Module:
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.PReLU(cout)]
    return nn.Sequential(*block(1, 8), *block(8, 16), *block(16, 32), nn.Flatten(), nn.Linear(32 * 2 * 2, 64),
                         nn.Linear(64, IDENTITIES))


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    x, y = pattern_images(3200, IDENTITIES, seed=1, size=16, noise=0.4)
    x = (x - x.mean()) / x.std()
    lr = 0.001 if ctx.fixed else 0.1
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    criterion = nn.CrossEntropyLoss()
    guard = ctx.torch_guard(model, opt)
    losses = []
    for step, (xb, yb) in enumerate(minibatches([x, y], 32, epochs=EPOCHS, seed=2)):
        opt.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        ctx.torch_step(guard, opt, loss, inputs=xb, targets=yb)
        losses.append(loss.item())
        ctx.log_scalar(step, loss=losses[-1], lr=lr)
    ctx.close(guard)
    return ctx.outcome(tail_mean(losses), model=model, steps=len(losses), first_loss=losses[0],
                       trivial_loss=float(np.log(IDENTITIES)))
