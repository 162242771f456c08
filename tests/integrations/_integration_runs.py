"""Shared by the integration tests: a tiny regression set, a plain-guard reference run, run-log record keys."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from torch import nn

import trainguard
from trainguard.core.stats import StepStats

SAMPLES, BATCH, ACCUMULATE, EPOCHS = 64, 8, 2, 2
OPTIMIZER_STEPS = EPOCHS * SAMPLES // (BATCH * ACCUMULATE)
NAN_CALL = 5  # the training forward whose loss is NaN: micro-batch 5 is in optimizer step 5 // ACCUMULATE
NAN_STEP = NAN_CALL // ACCUMULATE
STEP_KEYS = {field.name for field in dataclasses.fields(StepStats)} | {"type"}  # a step record's possible keys


def data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(SAMPLES, 4, generator=generator)
    return x, x.sum(1, keepdim=True)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))


class MeanLoss(nn.Module):
    """An HF-style model: a dict with the micro-batch's mean loss. No ``**kwargs`` in forward: the Trainer's
    ``model_accepts_loss_kwargs`` is False, no num_items_in_batch."""

    def __init__(self):
        super().__init__()
        self.net = mlp()

    def forward(self, x, labels=None):
        out = self.net(x)
        return {"loss": nn.functional.mse_loss(out, labels), "logits": out}


def record_keys(path: Path) -> dict[str, set[str]]:
    """The keys each record type uses in a run log (what "the same run log format" compares)."""
    keys: dict[str, set[str]] = {}
    for line in Path(path).read_text().splitlines():
        record = json.loads(line)
        keys.setdefault(record["type"], set()).update(record)
    return keys


def plain_guard_log(path: Path) -> Path:
    """A few steps of the plain torch guard (same preset as the integration tests), for format comparison."""
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = data()
    with trainguard.Guard(model, optimizer, log=path, preset="full") as guard:
        for i in range(3):
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x[i * BATCH:(i + 1) * BATCH]), y[i * BATCH:(i + 1) * BATCH])
            loss.backward()
            guard.step(loss, batch_size=BATCH, inputs=x[:BATCH], targets=y[:BATCH])
    return path
