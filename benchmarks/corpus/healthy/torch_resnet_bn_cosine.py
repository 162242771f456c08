"""A small ResNet (BasicBlocks with BatchNorm) trained by SGD with Nesterov momentum, weight
decay and a cosine LR schedule with a linear warm-up: the CIFAR recipe, scaled down.

Recipe: He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016; CIFAR-10: BasicBlocks of two 3x3
convolutions with BatchNorm, a 1x1 projection shortcut when the shape changes, SGD momentum 0.9, weight decay
1e-4..5e-4) with the cosine schedule of Loshchilov & Hutter (SGDR, ICLR 2017) and a short linear warm-up (Goyal et
al., "Accurate, Large Minibatch SGD", 2017), as torchvision's reference classification scripts combine them
(``--lr-scheduler cosineannealinglr --lr-warmup-epochs``). Here: a stem conv (16 channels) and three stages of one
BasicBlock each (16, 32, 64 channels, stride 2 from the second), global average pooling and a linear head, on
16x16 images of 8 noisy shifted templates; SGD lr 0.1 (nesterov, momentum 0.9, weight decay 5e-4), batch 64, 400
steps: 20 steps of linear warm-up from lr 0.01, then cosine to 0.

Measured (unguarded, one thread, ~12 s CPU): training loss 1.96 over the first 10 steps -> 0.025 (last 10%),
never above 0.59 after step 50; held-out loss 0.41 and accuracy 0.86 (ln 8 = 2.08 and 0.125 for the trivial
predictor).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.healthy._common import Batches, pattern_images, tail_mean
from benchmarks.corpus.healthy._torch_loop import train_supervised

CASE = Case(name="torch_resnet_bn_cosine", kind="healthy", cause=None, framework="torch",
            source="He et al. 2016 (ResNet, CIFAR recipe) with SGDR's cosine schedule and a linear warm-up, as in "
                   "torchvision's classification reference scripts",
            symptom="none: LR warm-up 0.01 -> 0.1 over 20 steps, then a cosine decay to 0")

CLASSES, STEPS, WARMUP, BATCH, LR = 8, 400, 20, 64, 0.1


class BasicBlock(nn.Module):
    def __init__(self, n_in: int, n_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(n_out)
        self.conv2 = nn.Conv2d(n_out, n_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(n_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or n_in != n_out:
            self.shortcut = nn.Sequential(nn.Conv2d(n_in, n_out, 1, stride=stride, bias=False), nn.BatchNorm2d(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def small_resnet(classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        BasicBlock(16, 16, 1), BasicBlock(16, 32, 2), BasicBlock(32, 64, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, classes))


def lr_at(step: int) -> float:
    """Linear warm-up from LR/10 to LR over WARMUP steps, then cosine annealing to 0 at STEPS."""
    if step < WARMUP:
        return LR * (0.1 + 0.9 * step / WARMUP)
    return 0.5 * LR * (1 + math.cos(math.pi * (step - WARMUP) / (STEPS - WARMUP)))


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    x, y = pattern_images(3000, CLASSES, seed=411, noise=1.0)
    x_train, y_train = x[:2500], y[:2500]
    x_test, y_test = torch.from_numpy(x[2500:]), torch.from_numpy(y[2500:])
    model = small_resnet(CLASSES)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_at(step) / LR)
    batches = Batches((x_train, y_train), BATCH, seed=412)
    loss_fn = nn.CrossEntropyLoss()
    guard = ctx.torch_guard(model, opt, scheduler=sched)
    losses = train_supervised(ctx, guard, model, opt, loss_fn, batches, STEPS, sched)
    ctx.close(guard)
    model.eval()
    with torch.no_grad():
        test_loss = loss_fn(model(x_test), y_test).item()
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    return ctx.outcome(test_loss, model=model, steps=STEPS, first_loss=sum(losses[:10]) / 10,
                       train_tail=tail_mean(losses), trivial_loss=math.log(CLASSES), test_accuracy=accuracy)
