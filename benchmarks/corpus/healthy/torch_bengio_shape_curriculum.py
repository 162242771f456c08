"""Curriculum learning, easy then hard: a small CNN is trained on clean shape images first and, at step 400 of 1,000,
switched to harder images of the same classes (other samples, 4x the pixel noise); the loss jumps at the switch and
falls again.

Recipe: the shape-recognition curriculum of Bengio, Louradour, Collobert & Weston, "Curriculum Learning" (ICML 2009,
https://dl.acm.org/doi/10.1145/1553374.1553380, section 5: a network trained on the less variable BasicShapes set
until a "switch epoch", then on the harder GeomShapes set; the switch helped the final error), the two-stage
"baby steps" schedule the survey of Soviany et al., "Curriculum Learning: A Survey" (IJCV 2022,
https://arxiv.org/abs/2101.10382) calls a discrete curriculum. Here 10 classes of 16x16 pattern images, easy =
pixel noise 0.25, hard = pixel noise 1.0 (other samples), a CNN of 2 conv layers (16-32 channels) with global
average pooling, SGD momentum 0.9 lr 0.05, batch 64.

Measured (unguarded, one thread, 4.3 s CPU): training loss, mean of the 50 steps before the switch 0.064, at the
switch 2.07, mean of steps 450-500 0.19, last 10% 0.13 (ln 10 = 2.30); held-out accuracy on hard images 0.95.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.healthy._common import Batches, pattern_images, tail_mean
from benchmarks.corpus.healthy._phased import PhasedBatches
from benchmarks.corpus.healthy._torch_loop import train_supervised

CASE = Case(name="torch_bengio_shape_curriculum", kind="healthy", cause=None, framework="torch",
            source="Bengio et al., Curriculum Learning (ICML 2009), shape recognition with a switch epoch; "
                   "Soviany et al., Curriculum Learning: A Survey, arXiv:2101.10382",
            symptom="none: at the switch to the hard images (step 400) the loss jumps, then falls again")

CLASSES, STEPS, SWITCH = 10, 1000, 400


def _noisy(clean: np.ndarray, noise: float, seed: int) -> np.ndarray:
    x = clean + noise * np.random.default_rng(seed).normal(size=clean.shape)
    return ((x - x.mean()) / x.std()).astype(np.float32)


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    clean, y = pattern_images(5500, CLASSES, seed=61, noise=0.0)
    easy, hard = slice(0, 2500), slice(2500, 5000)
    x_easy, x_hard = _noisy(clean[easy], 0.25, seed=62), _noisy(clean[hard], 1.0, seed=63)
    x_test = torch.from_numpy(_noisy(clean[5000:], 1.0, seed=64))
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(32, CLASSES))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    batches = PhasedBatches([(0, Batches((x_easy, y[easy]), 64, seed=65)),
                             (SWITCH, Batches((x_hard, y[hard]), 64, seed=66))])
    guard = ctx.torch_guard(model, opt)
    losses = train_supervised(ctx, guard, model, opt, nn.CrossEntropyLoss(), batches, STEPS)
    ctx.close(guard)
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == torch.from_numpy(y[5000:])).float().mean().item()
    return ctx.outcome(tail_mean(losses), model=model, steps=STEPS, trivial_loss=math.log(CLASSES),
                       loss_around_switch=(round(float(np.mean(losses[SWITCH - 50:SWITCH])), 4),
                                           round(losses[SWITCH], 3),
                                           round(float(np.mean(losses[SWITCH + 50:SWITCH + 100])), 4)),
                       hard_test_accuracy=accuracy)
