"""Fine-tuning a pretrained CNN: new head trained on a frozen backbone, then the whole network unfrozen at a lower LR.

Recipe: PyTorch's transfer-learning tutorial (https://pytorch.org/tutorials/beginner/transfer_learning_tutorial.html:
"ConvNet as fixed feature extractor", ``requires_grad = False`` on the pretrained layers, a new final layer) followed
by the gradual unfreezing and discriminative learning rates of ULMFiT (Howard & Ruder, ACL 2018,
https://arxiv.org/abs/1801.06146): the backbone joins training after the head has converged, with a 10x smaller
LR. The "pretrained" backbone is trained here first (unguarded, as a downloaded checkpoint would be) on 4 source
classes of noisy templates; the guarded run fine-tunes it on 6 new target classes: 300 steps head-only (backbone
gradients absent, its BatchNorm layers in eval mode so the pretrained statistics stay, as frozen feature
extractors are commonly run), then 500 steps with everything trainable and in train mode (backbone lr 1e-4, head
1e-3, Adam, batch 32). At the unfreeze the number of tensors receiving gradients jumps from 2 to 12.

Measured (unguarded, one thread, 4.8 s with the pretraining): fine-tuning loss 2.88 over the first 10 batches
(ln 6 = 1.79; the new head starts on large pretrained features) -> 0.81 over the 30 batches before the unfreeze
(the frozen features' limit) -> 0.20 (last 10%); held-out accuracy 0.92 (chance 0.17).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.healthy._common import Batches, pattern_images, tail_mean

CASE = Case(name="torch_freeze_unfreeze", kind="healthy", cause=None, framework="torch",
            source="https://pytorch.org/tutorials/beginner/transfer_learning_tutorial.html; ULMFiT gradual "
                   "unfreezing (Howard & Ruder 2018, arXiv:1801.06146)",
            symptom="none: at step 300 the frozen backbone starts receiving gradients (2 -> 12 tensors with gradients)")

SOURCE_CLASSES, TARGET_CLASSES, HEAD_STEPS, FULL_STEPS = 4, 6, 300, 500


def make_backbone() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU())


def pretrain(backbone: nn.Module) -> None:
    """The stand-in for a downloaded checkpoint: 300 Adam steps on the source task, no guard."""
    x, y = pattern_images(2000, SOURCE_CLASSES, seed=61, noise=1.0)
    model = nn.Sequential(backbone, nn.Linear(64, SOURCE_CLASSES))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = Batches((x, y), 32, seed=62)
    for _ in range(300):
        xb, yb = (torch.from_numpy(a) for a in batches.next())
        opt.zero_grad()
        nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    backbone = make_backbone()
    pretrain(backbone)
    x, y = pattern_images(2400, TARGET_CLASSES, seed=63, noise=1.0)
    x_train, y_train = x[:1800], y[:1800]
    x_test, y_test = torch.from_numpy(x[1800:]), torch.from_numpy(y[1800:])
    head = nn.Linear(64, TARGET_CLASSES)
    model = nn.Sequential(backbone, head)
    for p in backbone.parameters():
        p.requires_grad = False
    backbone.eval()  # frozen feature extractor: BatchNorm keeps the pretrained statistics
    opt = torch.optim.Adam([{"params": backbone.parameters(), "lr": 1e-4}, {"params": head.parameters(), "lr": 1e-3}])
    batches = Batches((x_train, y_train), 32, seed=64)
    guard = ctx.torch_guard(model, opt)
    losses = []
    for step in range(HEAD_STEPS + FULL_STEPS):
        if step == HEAD_STEPS:
            for p in backbone.parameters():
                p.requires_grad = True
            backbone.train()
        xb, yb = (torch.from_numpy(a) for a in batches.next())
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        ctx.torch_step(guard, opt, loss, inputs=xb, targets=yb)
        losses.append(loss.item())
        ctx.log_scalar(step, loss=losses[-1])
    ctx.close(guard)
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    return ctx.outcome(tail_mean(losses), model=model, steps=len(losses), first_loss=float(np.mean(losses[:10])),
                       trivial_loss=math.log(TARGET_CLASSES), test_accuracy=accuracy,
                       loss_at_unfreeze=float(np.mean(losses[HEAD_STEPS - 30:HEAD_STEPS])))
