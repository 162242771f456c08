"""A classifier whose loss is the per-sample sum divided by the configured batch size: the partial last batch of
every epoch gets a loss (and gradient) too small by the ratio of the batch sizes.

Source: https://github.com/SewoongLab/spectre-defense/issues/3 ("Fix batch loss normalization in mini_train"): "The
normalization of the loss in ``mini_train`` is slightly off if the batch does not have size ``batch_size``, which
can be the case when ``drop_last`` is false." The training loop computes ``CrossEntropyLoss(reduction="sum")`` and
divides it by ``batch_size``.
Symptom: the loss of the last, smaller batch of each epoch drops by the factor (its size / batch_size) - here
26/128, once per epoch - and that batch's samples are under-weighted in the update.
Fix: divide by the number of samples in the batch (``len(x)``); nothing else changes.

Here: an MLP 16-64-64-10 on 1,050 samples of a 10-class Gaussian-blob task, batch 128 (8 full batches and one of 26
per epoch), SGD(lr=0.1, momentum=0.9), 40 epochs.
final_loss: the held-out cross-entropy (mean over 1,000 samples), the same measure for both twins.
Measured (unguarded, one thread): faulty: logged loss at the partial batches 0.10x the full batch before them
(median; 0.51x in the fixed twin, a noisier 26-sample mean), held-out loss 0.107; fixed: 0.103.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._torch_common import minibatches

CASE = Case(name="torch_spectre3_sum_over_fixed_batch", kind="faulty", cause="batch_size_dependent_loss",
            framework="torch",
            source="https://github.com/SewoongLab/spectre-defense/issues/3 (batch loss normalization in mini_train)",
            symptom="loss of the partial last batch of each epoch scaled by its size / batch_size (26/128)",
            fix="divide the summed loss by the batch's own size, len(x)")

CLASSES, BATCH_SIZE, EPOCHS = 10, 128, 40


def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(size=(2 * CLASSES, 16)) * 1.5
    blob = rng.integers(0, 2 * CLASSES, n)
    return (centres[blob] + rng.normal(size=(n, 16))).astype(np.float32), (blob % CLASSES).astype(np.int64)


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    x, y = _blobs(1050, seed=1)
    x_test, y_test = (torch.from_numpy(a) for a in _blobs(1000, seed=2))
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, CLASSES))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    criterion = nn.CrossEntropyLoss(reduction="sum")
    guard = ctx.torch_guard(model, opt)
    losses = []
    for step, (xb, yb) in enumerate(minibatches([x, y], BATCH_SIZE, epochs=EPOCHS, seed=3)):
        opt.zero_grad()
        loss = criterion(model(xb), yb) / (len(xb) if ctx.fixed else BATCH_SIZE)
        loss.backward()
        ctx.torch_step(guard, opt, loss, inputs=xb, targets=yb, batch_size=len(xb))
        losses.append(loss.item())
        ctx.log_scalar(step, loss=losses[-1], lr=0.1)
    ctx.close(guard)
    with torch.no_grad():
        test_loss = nn.functional.cross_entropy(model(x_test), y_test).item()
    per_epoch = len(losses) // EPOCHS
    partial = np.array(losses[per_epoch - 1::per_epoch])
    full = np.array(losses[per_epoch - 2::per_epoch])
    return ctx.outcome(test_loss, model=model, steps=len(losses),
                       partial_over_full=float(np.median(partial / full)))
