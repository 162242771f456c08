"""A trainer that validates in the middle of an epoch with ``model.eval()`` and calls ``model.train()`` only at the
start of the next epoch: the rest of every epoch trains with Dropout off.

Source: https://github.com/wkentaro/pytorch-fcn/issues/57 ("A little bug in trainer.py"): "Do you find that the
training loss will suddenly become larger when a new epoch starts? I've noticed that and think it is because of the
incorrect use of the training and evaluating mode of the model. In train_epoch(), line 171, when you finish
validation, I think you should change the model back into training mode." Confirmed and fixed by the maintainer
(commit d10dd30: ``self.model.train()`` right after ``self.validate()``).
The trainer calls ``model.train()`` at the top of ``train_epoch`` and ``validate()`` every ``interval_validate``
iterations; ``validate()`` switches the model to eval mode and leaves it there.

Here: an FCN-style per-pixel classifier (convs, Dropout2d(0.5) before the score layer as FCN's drop6/drop7) on 16x16
images (pixels 0..255 scaled to 0..1) with 3 region classes, SGD(lr=0.05, momentum=0.9), batch 16, 40 iterations per
epoch, validation every 25 iterations, 10 epochs.
final_loss: the held-out per-pixel cross-entropy in eval mode, the same measure for both twins. extra: the median
ratio of the first training loss of an epoch to the last loss of the epoch before (the reported jump).
Measured (unguarded, one thread): faulty: jump ratio 3.8, held-out loss 0.038; fixed: jump ratio 0.96,
held-out loss 0.048.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._torch_common import minibatches

CASE = Case(name="torch_fcn57_eval_after_validate", kind="faulty", cause="bn_inference_mode", framework="torch",
            source="https://github.com/wkentaro/pytorch-fcn/issues/57 (model left in eval mode after validate)",
            symptom="training loss suddenly larger at every new epoch: Dropout off after the mid-epoch validation",
            fix="model.train() right after validate() (maintainer's commit d10dd30)")

SIZE, CLASSES, PER_EPOCH, INTERVAL, EPOCHS = 16, 3, 40, 25, 10


def _scenes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images with a bright and a dim rectangle on noise; labels: background, bright, dim, per pixel."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    images = rng.uniform(0, 120, size=(n, SIZE, SIZE))
    labels = np.zeros((n, SIZE, SIZE), dtype=np.int64)
    for i in range(n):
        for cls, level in ((2, 160.0), (1, 255.0)):
            x0, y0 = rng.integers(0, SIZE - 5, 2)
            w, h = rng.integers(4, 9, 2)
            box = (xx >= x0) & (xx < x0 + w) & (yy >= y0) & (yy < y0 + h)
            images[i][box] = level - rng.uniform(0, 60, box.sum())
            labels[i][box] = cls
    return images[:, None].astype(np.float32) / 255.0, labels


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    x, y = _scenes(PER_EPOCH * 16, seed=1)
    x_val, y_val = (torch.from_numpy(a) for a in _scenes(200, seed=2))
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=2, dilation=2),
                          nn.ReLU(), nn.Dropout2d(0.5), nn.Conv2d(16, 16, 1), nn.ReLU(), nn.Dropout2d(0.5),
                          nn.Conv2d(16, CLASSES, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    guard = ctx.torch_guard(model, opt)
    losses, iteration = [], 0
    batches = minibatches([x, y], 16, epochs=EPOCHS, seed=3)
    for _epoch in range(EPOCHS):
        model.train()  # train_epoch
        for _ in range(PER_EPOCH):
            if iteration % INTERVAL == 0:  # validate(): model.eval() and evaluate
                model.eval()
                with torch.no_grad():
                    criterion(model(x_val), y_val)
                if ctx.fixed:
                    model.train()
            xb, yb = next(batches)
            opt.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            ctx.torch_step(guard, opt, loss, inputs=xb, targets=yb)
            losses.append(loss.item())
            ctx.log_scalar(iteration, loss=losses[-1], lr=0.05)
            iteration += 1
    ctx.close(guard)
    model.eval()
    with torch.no_grad():
        val_loss = criterion(model(x_val), y_val).item()
    starts = np.array(losses[PER_EPOCH::PER_EPOCH])
    ends = np.array(losses[PER_EPOCH - 1:-1:PER_EPOCH])
    return ctx.outcome(val_loss, model=model, steps=iteration, epoch_start_jump=float(np.median(starts / ends)))
