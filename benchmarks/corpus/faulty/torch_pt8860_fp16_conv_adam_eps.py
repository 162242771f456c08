"""A 5-conv emotion classifier (HappyNet) trained in half precision with Adam: the loss is NaN; eps 1e-4 trains.

Source: pytorch/pytorch#8860, "NaN loss when using half precision" (https://github.com/pytorch/pytorch/issues/8860).
The reporter trains "a copy of HappyNet, with 5 convolutional layers, 2 fully connected one, and a softmax output"
(facial-expression recognition, 48x48 grey faces, 7 emotions) in ``half``, with Adam, and gets a NaN loss; they
cite the forum thread "Adam+Half Precision = NaNs?" (discuss.pytorch.org/t/adam-half-precision-nans/1765: Adam's
default eps 1e-8 rounds to 0 in float16). Fix: eps=1e-4; the reporter also clamped the conv outputs, and a later
commenter: "This worked for me only with changing eps=1e-4" (the fixed twin changes only eps).
Mechanism: in float16 ``0.001 g^2`` underflows to 0 for ``|g| < 7.7e-3`` and eps rounds to 0, so the first update
of most weights is m / 0.

Here: 5 conv layers (3x3, ReLU, three 2x max-pools; 16-16-32-32-64 channels) and 2 fully connected layers on
32x32 grey "faces" (7 class templates, shifted, heavy pixel noise: the classes overlap), cross-entropy, batch 32,
Adam(lr 1e-3), 5 epochs (350 steps); ``model.half()``: parameters, gradients and Adam's state are float16. CPUs have
no fast float16 convolution, so each conv/linear layer computes in float32 from its float16 weights and returns
float16 (as a GPU's tensor cores accumulate float16 products in float32); nothing of the optimizer changes.
Measured (unguarded, one thread, ~18 s; final_loss = mean training loss of the last 10% of steps, NaN if any is
NaN; ln 7 = 1.95): faulty: 1.93 at step 0, NaN from step 1 on, final nan; fixed (eps 1e-4): epoch means 1.95,
1.95, 1.90, 0.78, 0.38, final 0.37.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._torch_common import HalfConv2d, HalfLinear, minibatches, pattern_images, tail_mean

CASE = Case(name="torch_pt8860_fp16_conv_adam_eps", kind="faulty", cause="adam_epsilon", framework="torch",
            source="https://github.com/pytorch/pytorch/issues/8860 (NaN loss when using half precision: HappyNet, "
                   "5 conv + 2 FC, Adam)",
            symptom="loss nan when the conv net is trained in half precision with Adam",
            fix="Adam eps 1e-4 instead of the default 1e-8 ('worked for me only with changing eps=1e-4')")

CLASSES, EPOCHS = 7, 5


def _happynet() -> nn.Module:
    def block(cin: int, cout: int, pool: bool) -> list[nn.Module]:
        return [HalfConv2d(cin, cout, 3, padding=1), nn.ReLU()] + ([nn.MaxPool2d(2)] if pool else [])
    return nn.Sequential(*block(1, 16, False), *block(16, 16, True), *block(16, 32, False), *block(32, 32, True),
                         *block(32, 64, True), nn.Flatten(), HalfLinear(64 * 4 * 4, 64), nn.ReLU(),
                         HalfLinear(64, CLASSES))


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    model = _happynet().half()
    x, y = pattern_images(2240, CLASSES, seed=1, size=32, noise=3.0)
    x = x / 255.0
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-4 if ctx.fixed else 1e-8)
    guard = ctx.torch_guard(model, opt)
    losses = []
    for step, (xb, yb) in enumerate(minibatches([x, y], 32, epochs=EPOCHS, seed=2)):
        xb = xb.half()
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xb).float(), yb)
        loss.backward()
        ctx.torch_step(guard, opt, loss, inputs=xb, targets=yb)
        losses.append(loss.item())
        ctx.log_scalar(step, loss=losses[-1], lr=1e-3)
    ctx.close(guard)
    return ctx.outcome(tail_mean(losses), model=model, steps=len(losses), first_loss=losses[0],
                       trivial_loss=math.log(CLASSES))
