"""Seed 000: BatchNorm left in inference mode by a custom training loop; the network does not learn.

The user's Keras ``model.fit()`` trained well, but the hand-written step (``K.function`` without the learning
phase) exploded: the learning phase defaulted to "inference", so BatchNorm normalized with its moving
statistics, which are never updated there. The PyTorch form of the bug is a ``model.eval()`` (after a
validation pass, say) with no ``model.train()`` before the next training steps.

Here: a six-block CNN (conv 3x3, BatchNorm, ReLU; PyTorch's default initialisation) classifies 16x16 images of
10 noisy class templates; SGD lr 0.1, momentum 0.9, Nesterov (the seed's optimizer), batches of 64. In eval
mode each BatchNorm divides by its running variance, still 1 at initialisation and never updated, so it is a
fixed affine map and the network is a plain deep CNN. Its default initialisation shrinks the signal at every
layer, the logits reach the head nearly constant, and the loss stays at ln(10) ~ 2.30: accuracy at chance.
(With larger inputs or a deeper net the same missing normalization makes the updates blow up instead, as in the
seed.) The healthy twin calls ``model.train()``; nothing else changes.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from trainguard.scenarios.runner import Scenario, ScenarioResult, check_size, finish, minibatches, seeded, train

__all__ = ["SCENARIO", "run"]

SEED = 0
CLASSES, SIDE, N_SAMPLES, BATCH_SIZE = 10, 16, 1024, 64
WIDTH, BLOCKS = 8, 6
EPOCHS = {"full": 4, "small": 2}
# Accuracy on the training images: chance is 0.1.
LEARNED_ACCURACY = 0.9


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.RandomState(SEED)
    templates = rng.standard_normal((CLASSES, 1, SIDE, SIDE)).astype(np.float32)
    labels = rng.randint(0, CLASSES, N_SAMPLES)
    images = templates[labels] + rng.standard_normal((N_SAMPLES, 1, SIDE, SIDE)).astype(np.float32)
    return torch.from_numpy(images), torch.from_numpy(labels)


def _model() -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 1
    for block in range(BLOCKS):
        stride = 2 if block in (1, 3) else 1
        out = channels * 2 if stride == 2 else WIDTH if block == 0 else channels
        layers += [nn.Conv2d(channels, out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
        channels = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, CLASSES))


def run(healthy: bool = False, guard_policy: str | None = None, log: str | None = None,
        size: str = "full") -> ScenarioResult:
    check_size(size)
    x, y = _data()
    with seeded(SEED):
        model = _model()
        model.train(healthy)  # the fault: model.eval() still on while training
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
        order = torch.Generator().manual_seed(SEED)
        trace = train(model=model, optimizer=optimizer, batches=lambda epoch: minibatches(x, y, BATCH_SIZE, order),
                      loss_fn=lambda xb, yb: nn.functional.cross_entropy(model(xb), yb),
                      epochs=EPOCHS[size], guard_policy=guard_policy, log=log)
        model.eval()
        with torch.no_grad():
            accuracy = float((model(x).argmax(1) == y).float().mean())
    final = trace.losses[-1] if trace.losses else math.nan
    failed = not accuracy >= LEARNED_ACCURACY
    outcome = f"accuracy {accuracy:.0%} (chance {1 / CLASSES:.0%}), loss {final:.2g}"
    metrics = {"accuracy": accuracy, "final_loss": final}
    return finish(SCENARIO.name, healthy, guard_policy, trace, failed=failed, outcome=outcome, metrics=metrics)


SCENARIO = Scenario(
    name="bn_inference_mode", seed_id="000", seed_file="000_4cc83535246b1d3e", cause="bn_inference_mode",
    description="six-block BatchNorm CNN trained with model.eval() still on, SGD 0.1 Nesterov: stuck at chance",
    healthy_twin="model.train() before training", run=run)
