"""Box regression on a custom dataset with a few wrong annotations (x2 < x1): the box loss turns NaN.

Source: https://github.com/jwyang/faster-rcnn.pytorch/issues/562 ("loss is nan;rpn_box: is nan;why?"). The reporter
trains the repository's Faster R-CNN on a custom two-class dataset (hat, head).
Symptom: "[iter 0] loss: 2.0858 ... [iter 100] loss: nan ... rpn_box: nan"; the reporter later: "There are some
samples that are wrong, I have got it", and others in the thread remove their bad annotations.
Why: the regression targets encode width and height as log(gt_w / anchor_w); a box whose x2 is left of its x1 has
a negative width, its target log(negative) is NaN, and the smooth-L1 box loss of that batch - and every weight after
the update - is NaN.
Fix (the reporter's): drop the wrong samples; nothing else changes.

Here: 16x16 images (pixels 0..255, scaled to 0..1) each holding one bright rectangle; a small CNN regresses
(dx, dy, log dw, log dh) against a fixed 8x8 anchor with smooth L1, SGD(lr=0.01, momentum=0.9), batch 16; 4 of
2,000 annotations have x1 and x2 swapped; 2 epochs.
Measured (unguarded, one thread): faulty: loss 0.081 -> nan at the first batch holding a wrong box (step 10),
final nan; fixed: 0.063 -> 0.036 (mean of the last 10% of steps).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._torch_common import minibatches, tail_mean

CASE = Case(name="torch_fasterrcnn562_degenerate_boxes", kind="faulty", cause="bad_batch", framework="torch",
            source="https://github.com/jwyang/faster-rcnn.pytorch/issues/562 (loss nan, rpn_box nan: wrong samples)",
            symptom="loss 2.09 at iter 0, nan by iter 100 (rpn_box nan); some annotations were wrong",
            fix="remove the wrong samples (boxes with x2 < x1) from the dataset")

N, SIZE, ANCHOR = 2000, 16, (8.0, 8.0, 8.0, 8.0)  # anchor centre x, y, width, height


def _dataset(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x1, y1 = rng.uniform(0, 8, N), rng.uniform(0, 8, N)
    w, h = rng.uniform(3, 8, N), rng.uniform(3, 8, N)
    boxes = np.stack([x1, y1, x1 + w, y1 + h], 1)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    inside = ((xx >= boxes[:, 0, None, None]) & (xx <= boxes[:, 2, None, None])
              & (yy >= boxes[:, 1, None, None]) & (yy <= boxes[:, 3, None, None]))
    images = 200.0 * inside + rng.uniform(0, 55, size=(N, SIZE, SIZE))
    wrong = rng.choice(N, size=4, replace=False)
    boxes[wrong] = boxes[wrong][:, [2, 1, 0, 3]]  # x1 and x2 swapped in the annotation file
    return images[:, None].astype(np.float32), boxes.astype(np.float32)


def _targets(boxes: torch.Tensor) -> torch.Tensor:
    """Faster R-CNN's bbox_transform against the anchor."""
    ax, ay, aw, ah = ANCHOR
    gw, gh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    gx, gy = boxes[:, 0] + 0.5 * gw, boxes[:, 1] + 0.5 * gh
    return torch.stack([(gx - ax) / aw, (gy - ay) / ah, torch.log(gw / aw), torch.log(gh / ah)], 1)


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    images, boxes = _dataset(seed=1)
    if ctx.fixed:
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        images, boxes = images[keep], boxes[keep]
    images = images / 255.0
    model = nn.Sequential(nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    guard = ctx.torch_guard(model, opt)
    losses = []
    for step, (xb, bb) in enumerate(minibatches([images, boxes], 16, epochs=2, seed=2)):
        targets = _targets(bb)
        opt.zero_grad()
        loss = F.smooth_l1_loss(model(xb), targets)
        loss.backward()
        ctx.torch_step(guard, opt, loss, inputs=xb, targets=targets)
        losses.append(loss.item())
        ctx.log_scalar(step, loss=losses[-1], lr=0.01)
    ctx.close(guard)
    first_nan = next((i for i, v in enumerate(losses) if not math.isfinite(v)), -1)
    return ctx.outcome(tail_mean(losses), model=model, steps=len(losses), first_loss=losses[0],
                       first_nan_step=first_nan)
