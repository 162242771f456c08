"""Progressive resizing: a small all-convolutional CNN (global average pooling, so any image size fits) is trained
on 8x8 down-sampled images for the first half, then on the full 16x16 images; the loss rises at the resize and falls
again.

Recipe: fast.ai's progressive resizing (Howard & Gugger, "Deep Learning for Coders with fastai and PyTorch", 2020,
chapter 7 "Training a State-of-the-Art Model", section "Progressive Resizing": train on small images, then continue
at the final size with the same model, https://github.com/fastai/fastbook/blob/master/07_sizing_and_tta.ipynb;
the DAWNBench ImageNet entry of fast.ai, 2018), and the "progressive learning" of Tan & Le, "EfficientNetV2"
(ICML 2021, https://arxiv.org/abs/2104.00298, section 4: the image size raised in stages). Here 10 classes of
16x16 pattern images, 3 conv layers (16-32-32 channels, BatchNorm, ReLU), Adam lr 2e-3, batch 64, 400 steps at 8x8
(2x2 average pooling of the same images) then 400 at 16x16.

Measured (unguarded, one thread, 7.4 s CPU): training loss, mean of the 50 steps before the resize 0.16, at the
resize 0.80, mean of steps 450-500 0.38, last 10% 0.22 (ln 10 = 2.30); held-out accuracy at 16x16 0.88.
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

CASE = Case(name="torch_progressive_resizing_cnn", kind="healthy", cause=None, framework="torch",
            source="fast.ai progressive resizing (fastbook ch. 7, 07_sizing_and_tta.ipynb); Tan & Le, "
                   "EfficientNetV2 progressive learning, arXiv:2104.00298",
            symptom="none: at the resize (step 400, 8x8 -> 16x16 images) the loss rises, then falls again")

CLASSES, STEPS, RESIZE = 10, 800, 400


def _downsample(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    return np.ascontiguousarray(x.reshape(n, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5)))


def _block(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    x, y = pattern_images(3000, CLASSES, seed=51, noise=0.8)
    train, test = slice(0, 2500), slice(2500, None)
    small = _downsample(x)
    model = nn.Sequential(_block(1, 16), _block(16, 32), nn.MaxPool2d(2), _block(32, 32),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, CLASSES))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    batches = PhasedBatches([(0, Batches((small[train], y[train]), 64, seed=52)),
                             (RESIZE, Batches((x[train], y[train]), 64, seed=53))])
    guard = ctx.torch_guard(model, opt)
    losses = train_supervised(ctx, guard, model, opt, nn.CrossEntropyLoss(), batches, STEPS)
    ctx.close(guard)
    model.eval()
    with torch.no_grad():
        accuracy = (model(torch.from_numpy(x[test])).argmax(1) == torch.from_numpy(y[test])).float().mean().item()
    return ctx.outcome(tail_mean(losses), model=model, steps=STEPS, trivial_loss=math.log(CLASSES),
                       loss_around_resize=(round(float(np.mean(losses[RESIZE - 50:RESIZE])), 4),
                                           round(losses[RESIZE], 3),
                                           round(float(np.mean(losses[RESIZE + 50:RESIZE + 100])), 4)),
                       test_accuracy=accuracy)
