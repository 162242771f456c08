"""Class imbalance handled with a weighted cross-entropy: 4 classes at 85 / 10 / 4 / 1%, weights 1 / frequency.

Recipe: ``nn.CrossEntropyLoss(weight=...)`` (https://docs.pytorch.org/docs/stable/generated/torch.nn.
CrossEntropyLoss.html, "useful when you have an unbalanced training set"), the weights set to the inverse class
frequency, n_samples / (n_classes * count), scikit-learn's ``class_weight="balanced"`` formula. An MLP
16-64-64-4, Adam 1e-3, batch 64, 1,500 steps. Each batch holds 0-3 samples of the rarest class, each weighing ~95x
a common one (27.8 against 0.29), so the per-batch loss jumps whenever one of them is misclassified; the measure
of success is the balanced (macro-averaged) accuracy, not plain accuracy.

Measured (unguarded, one thread, 2.0 s): training classes 3,416 / 402 / 146 / 36; weighted loss 1.38 over the first
10 batches (ln 4 = 1.39) -> 0.13 (last 10%); held-out balanced accuracy 0.78 (chance 0.25), plain accuracy 0.916
against 0.853 for always predicting the majority class.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.healthy._common import Batches, tail_mean, teacher_classification
from benchmarks.corpus.healthy._torch_loop import train_supervised

CASE = Case(name="torch_weighted_ce_imbalance", kind="healthy", cause=None, framework="torch",
            source="https://docs.pytorch.org/docs/stable/generated/torch.nn.CrossEntropyLoss.html (weight=); "
                   "inverse-frequency class weights",
            symptom="none: per-batch loss jumps when a rare (weight ~95x) sample is in the batch and misclassified")

CLASSES, STEPS, SHARES = 4, 1500, (0.85, 0.10, 0.04, 0.01)


def imbalanced(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Draws from a balanced blob task, keeping each class with probability proportional to its share."""
    x, y = teacher_classification(n * 4, 16, CLASSES, seed=seed, spread=2.4)
    rng = np.random.default_rng(seed + 1)
    keep = rng.random(len(y)) < np.array(SHARES)[y] / max(SHARES)
    return x[keep][:n], y[keep][:n]


def balanced_accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean([(pred[y == c] == c).mean() for c in range(CLASSES)]))


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    x, y = imbalanced(6000, seed=101)
    x_train, y_train, x_test, y_test = x[:4000], y[:4000], torch.from_numpy(x[4000:]), y[4000:]
    counts = np.bincount(y_train, minlength=CLASSES)
    weight = torch.tensor(len(y_train) / (CLASSES * counts), dtype=torch.float32)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, CLASSES))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    batches = Batches((x_train, y_train), 64, seed=102)
    guard = ctx.torch_guard(model, opt)
    losses = train_supervised(ctx, guard, model, opt, loss_fn, batches, STEPS, log_lr=False)
    ctx.close(guard)
    with torch.no_grad():
        pred = model(x_test).argmax(1).numpy()
    return ctx.outcome(tail_mean(losses), model=model, steps=STEPS, first_loss=float(np.mean(losses[:10])),
                       trivial_loss=math.log(CLASSES), class_counts=counts.tolist(),
                       balanced_accuracy=balanced_accuracy(pred, y_test),
                       majority_accuracy=float((y_test == 0).mean()), accuracy=float((pred == y_test).mean()))
