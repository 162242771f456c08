"""A domain-incremental task switch: an MLP learns task 1, then, at step 600 of 1,200, the input pixels are permuted
(task 2, the same labels) and it learns that; the training loss jumps back to about chance at the switch and falls.

Recipe: the permuted-input tasks of Goodfellow et al., "An Empirical Investigation of Catastrophic Forgetting in
Gradient-Based Neural Networks" (2013, https://arxiv.org/abs/1312.6211, section 4: a fixed random permutation of
the input pixels per task, tasks trained one after the other), the "domain-incremental" scenario of van de Ven &
Tolias, "Three scenarios for continual learning" (2019, https://arxiv.org/abs/1904.07734; permuted MNIST, the
network trained on each task in turn with Adam lr 1e-4..1e-3). Here a 10-class blob task (32 inputs, 2 blobs a
class), an MLP 32-256-256-10, Adam lr 1e-3, batch 64, 600 steps a task.

Measured (unguarded, one thread, 2.0 s CPU): training loss, mean of the 50 steps before the switch 0.0006, at the
switch 5.6, mean of steps 650-700 0.0086, last 10% 0.0007; task-2 held-out accuracy 1.00 (chance 0.10), task 1
forgotten to 0.41 (the catastrophic forgetting the paper measures).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.healthy._common import Batches, tail_mean, teacher_classification
from benchmarks.corpus.healthy._phased import PhasedBatches
from benchmarks.corpus.healthy._torch_loop import train_supervised

CASE = Case(name="torch_permuted_task_switch", kind="healthy", cause=None, framework="torch",
            source="Goodfellow et al. 2013 permuted tasks, arXiv:1312.6211; van de Ven & Tolias 2019 "
                   "domain-incremental permuted MNIST, arXiv:1904.07734",
            symptom="none: at the task switch (step 600) the loss jumps to about chance, then falls again")

CLASSES, DIM, STEPS, SWITCH = 10, 32, 1200, 600


def _accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return (model(torch.from_numpy(x)).argmax(1) == torch.from_numpy(y)).float().mean().item()


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    x, y = teacher_classification(6000, DIM, CLASSES, seed=41, spread=1.0)
    permutation = np.random.default_rng(42).permutation(DIM)
    x2 = np.ascontiguousarray(x[:, permutation])
    train, test = slice(0, 5000), slice(5000, None)
    model = nn.Sequential(nn.Linear(DIM, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, CLASSES))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = PhasedBatches([(0, Batches((x[train], y[train]), 64, seed=43)),
                             (SWITCH, Batches((x2[train], y[train]), 64, seed=44))])
    guard = ctx.torch_guard(model, opt)
    losses = train_supervised(ctx, guard, model, opt, nn.CrossEntropyLoss(), batches, STEPS)
    ctx.close(guard)
    return ctx.outcome(tail_mean(losses), model=model, steps=STEPS, trivial_loss=math.log(CLASSES),
                       loss_around_switch=(round(float(np.mean(losses[SWITCH - 50:SWITCH])), 4),
                                           round(losses[SWITCH], 3),
                                           round(float(np.mean(losses[SWITCH + 50:SWITCH + 100])), 4)),
                       task1_test_accuracy_after_task2=_accuracy(model, x[test], y[test]),
                       task2_test_accuracy=_accuracy(model, x2[test], y[test]))
