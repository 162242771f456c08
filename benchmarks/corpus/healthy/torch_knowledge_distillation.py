"""Knowledge distillation: a small student trained on a frozen teacher's softened outputs plus the labels.

Recipe: PyTorch's "Knowledge Distillation Tutorial" (https://pytorch.org/tutorials/beginner/
knowledge_distillation_tutorial.html: the teacher in ``eval()`` under ``torch.no_grad()``, soft targets
``softmax(teacher_logits / T)``, the soft loss ``sum(p_teacher * (log p_teacher - log_softmax(student / T))) /
batch * T**2``, total = 0.25 * soft + 0.75 * cross-entropy, T = 2, Adam; Hinton et al. 2015,
https://arxiv.org/abs/1503.02531). The teacher (MLP 16-256-256-10, trained here first without a guard, as a
downloaded checkpoint would be) and a student MLP 16-16-10, on 10-class blobs with 15% label noise, batch 64,
1,200 student steps. The distillation loss mixes two terms of different scales, and its floor is the teacher's
own entropy at T, not 0.

Measured (unguarded, one thread, 3.1 s with the teacher's training): distillation loss 2.31 over the first 10
batches -> 0.90 (last 10%); held-out accuracy on clean labels: student 0.90, teacher 0.95 (chance 0.10).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.healthy._common import Batches, flip_labels, tail_mean, teacher_classification

CASE = Case(name="torch_knowledge_distillation", kind="healthy", cause=None, framework="torch",
            source="https://pytorch.org/tutorials/beginner/knowledge_distillation_tutorial.html; Hinton et al. 2015 "
                   "(arXiv:1503.02531)",
            symptom="none: loss = 0.25 * T^2 * KL(teacher || student at T=2) + 0.75 * CE on noisy labels")

CLASSES, STEPS, TEMPERATURE, SOFT_WEIGHT = 10, 1200, 2.0, 0.25


def train_teacher(x: np.ndarray, y: np.ndarray) -> nn.Module:
    teacher = nn.Sequential(nn.Linear(16, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, CLASSES))
    opt = torch.optim.Adam(teacher.parameters(), lr=1e-3)
    batches = Batches((x, y), 64, seed=372)
    for _ in range(800):
        xb, yb = (torch.from_numpy(a) for a in batches.next())
        opt.zero_grad()
        nn.functional.cross_entropy(teacher(xb), yb).backward()
        opt.step()
    return teacher.eval()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    x, y = teacher_classification(6000, 16, CLASSES, seed=371, spread=1.3)
    x_train, y_train = x[:5000], flip_labels(y[:5000], 0.15, CLASSES, seed=373)
    x_test, y_test = torch.from_numpy(x[5000:]), torch.from_numpy(y[5000:])
    teacher = train_teacher(x_train, y_train)
    student = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, CLASSES))
    opt = torch.optim.Adam(student.parameters(), lr=1e-3)
    batches = Batches((x_train, y_train), 64, seed=374)
    guard = ctx.torch_guard(student, opt)
    losses = []
    for step in range(STEPS):
        xb, yb = (torch.from_numpy(a) for a in batches.next())
        with torch.no_grad():
            soft_targets = torch.softmax(teacher(xb) / TEMPERATURE, dim=1)
        opt.zero_grad()
        logits = student(xb)
        soft_log_probs = torch.log_softmax(logits / TEMPERATURE, dim=1)
        soft = (soft_targets * (soft_targets.clamp_min(1e-12).log() - soft_log_probs)).sum() / len(xb)
        loss = SOFT_WEIGHT * soft * TEMPERATURE ** 2 + (1 - SOFT_WEIGHT) * nn.functional.cross_entropy(logits, yb)
        loss.backward()
        ctx.torch_step(guard, opt, loss, inputs=xb, targets=yb)
        losses.append(loss.item())
        ctx.log_scalar(step, loss=losses[-1])
    ctx.close(guard)
    return ctx.outcome(tail_mean(losses), model=student, steps=STEPS, first_loss=float(np.mean(losses[:10])),
                       trivial_loss=math.log(CLASSES), student_accuracy=accuracy(student, x_test, y_test),
                       teacher_accuracy=accuracy(teacher, x_test, y_test))
