"""A conv net trained in half precision with Adam: NaNs appear; SGD in half and Adam in float32 both train. The
reporter's working fix keeps float32 master copies of the weights and Adam's state.

Source: PyTorch forums, "Adam+Half Precision = NaNs?" (https://discuss.pytorch.org/t/adam-half-precision-nans/1765).
The reporter: NaNs appear when training with Adam in half (float16); the same nets train in half with SGD and
Nesterov momentum, and in float32 with Adam. A reply suggests the optimizer step in float32 on a float32 copy of the
parameters; another that eps 1e-8 "is rounded to 0 in half precision" (a division by 0). The reporter got it
working "by just hanging onto fp32 copies of the parameters and keeping all of the Adam values in fp32 as well"
(his gist), later noting that eps was the culprit. Fixed twin: that float32 master copy (Micikevicius et al. 2018's
mixed-precision recipe): forward and backward in float16, the gradients copied to float32 parameters, Adam (eps
1e-8, its state float32) stepping those, the result copied back to the float16 model. Nothing else changes.

Here: 3 conv layers (3x3, ReLU, 2x max-pool after each; 16-32-32 channels) and a linear classifier on 16x16
images of 10 classes (templates, shifted, pixel noise), cross-entropy, batch 32, Adam(lr 1e-3), 4 epochs (400
steps); ``model.half()``. CPUs have no fast float16 convolution, so each layer computes in float32 from its float16
weights and returns float16 (as tensor cores accumulate in float32); parameters, gradients and (faulty) Adam's state
are float16.
Measured (unguarded, one thread, ~6 s; final_loss = mean training loss of the last 10% of steps, NaN if any is NaN;
ln 10 = 2.30): faulty: 2.30 at step 0, NaN from step 1 on, final nan; fixed (float32 masters): epoch means
2.30, 2.05, 1.16, 0.80, final 0.75.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._torch_common import HalfConv2d, HalfLinear, minibatches, pattern_images, tail_mean

CASE = Case(name="torch_discuss1765_half_adam_master_weights", kind="faulty", cause="adam_epsilon", framework="torch",
            source="https://discuss.pytorch.org/t/adam-half-precision-nans/1765 (Adam+Half Precision = NaNs?)",
            symptom="NaNs with Adam in half precision; SGD in half and Adam in float32 train",
            fix="float32 master weights and Adam state, the float16 model a copy (the reporter's gist)")

CLASSES, EPOCHS = 10, 4


def _net() -> nn.Module:
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [HalfConv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*block(1, 16), *block(16, 32), *block(32, 32), nn.Flatten(), HalfLinear(32 * 2 * 2, CLASSES))


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    model = _net().half()
    x, y = pattern_images(3200, CLASSES, seed=1, size=16, noise=1.5)
    x = x / 255.0
    params = list(model.parameters())
    masters = [p.detach().float().clone().requires_grad_(True) for p in params] if ctx.fixed else params
    opt = torch.optim.Adam(masters, lr=1e-3)
    guard = ctx.torch_guard(model, opt)
    losses = []
    for step, (xb, yb) in enumerate(minibatches([x, y], 32, epochs=EPOCHS, seed=2)):
        xb = xb.half()
        opt.zero_grad()
        model.zero_grad()
        loss = nn.functional.cross_entropy(model(xb).float(), yb)
        loss.backward()
        if ctx.fixed:
            for master, p in zip(masters, params):
                master.grad = p.grad.float()
        ctx.torch_step(guard, opt, loss, inputs=xb, targets=yb)
        if ctx.fixed:
            with torch.no_grad():
                for master, p in zip(masters, params):
                    p.copy_(master)
        losses.append(loss.item())
        ctx.log_scalar(step, loss=losses[-1], lr=1e-3)
    ctx.close(guard)
    return ctx.outcome(tail_mean(losses), model=model, steps=len(losses), first_loss=losses[0],
                       trivial_loss=math.log(CLASSES))
