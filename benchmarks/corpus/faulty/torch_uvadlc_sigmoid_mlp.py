"""A 4-hidden-layer sigmoid MLP trained with SGD on FashionMNIST-like images: it barely learns; ReLU trains.

Source: https://github.com/phlippe/uvadlc_notebooks/issues/119 ("Tutorial 3 (PyTorch, JAX) Test accuracy for the
model with sigmoid activation function"), on the UvA Deep Learning Tutorial 3 "Activation Functions": an MLP
784-512-256-256-128-10 with a configurable activation, trained with SGD(lr=1e-2, momentum=0.9) on FashionMNIST.
Symptom: the sigmoid network's accuracy is "very poor"; the training "stops at epoch 8, because the result of
epoch 1 is better than epoch 2-8"; the author: "many continued to fail even after longer trainings. You need to be
a bit lucky that the gradients don't cancel each other out too much in the early layers" - the tutorial shows the
sigmoid network's first-layer gradients orders of magnitude below the last layer's.
Fix (the tutorial's conclusion): a ReLU activation in the hidden layers; nothing else changes.

Here: 16x16 image-like inputs of 10 classes (pixels 0..255, normalized to mean 0 / std 1 as the tutorial's
transform does), MLP 256-512-256-256-128-10, batch 128, 600 steps.
Measured (unguarded, one thread): faulty: loss 2.31 -> 2.31 (ln 10 = 2.30; mean of the last 10% of steps);
fixed (ReLU): 0.31.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._torch_common import minibatches, pattern_images, tail_mean

CASE = Case(name="torch_uvadlc_sigmoid_mlp", kind="faulty", cause="vanishing_gradient", framework="torch",
            source="https://github.com/phlippe/uvadlc_notebooks/issues/119 (Tutorial 3: sigmoid MLP fails to train)",
            symptom="sigmoid MLP's loss stays near ln 10; first-layer gradients orders of magnitude below the last",
            fix="ReLU instead of sigmoid in the hidden layers (the tutorial's conclusion)")

CLASSES, EPOCHS = 10, 20


def _mlp(activation: type[nn.Module]) -> nn.Sequential:
    sizes, layers = [256, 512, 256, 256, 128], []
    for n_in, n_out in zip(sizes, sizes[1:]):
        layers += [nn.Linear(n_in, n_out), activation()]
    return nn.Sequential(nn.Flatten(), *layers, nn.Linear(sizes[-1], CLASSES))


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    x, y = pattern_images(3840, CLASSES, seed=1, size=16, noise=0.8)
    x = (x / 255.0 - 0.5) / 0.5  # the tutorial's Normalize((0.5,), (0.5,)) after ToTensor
    model = _mlp(nn.ReLU if ctx.fixed else nn.Sigmoid)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    guard = ctx.torch_guard(model, opt)
    losses = []
    for step, (xb, yb) in enumerate(minibatches([x, y], 128, epochs=EPOCHS, seed=2)):
        opt.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        ctx.torch_step(guard, opt, loss, inputs=xb, targets=yb)
        losses.append(loss.item())
        ctx.log_scalar(step, loss=losses[-1], lr=1e-2)
    ctx.close(guard)
    return ctx.outcome(tail_mean(losses), model=model, steps=len(losses), first_loss=losses[0],
                       trivial_loss=math.log(CLASSES))
