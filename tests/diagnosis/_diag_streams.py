"""Synthetic StepStats streams for the diagnosis tests: a healthy run, and one fault injected at a time."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from trainguard.core.stats import ActivationStats, LayerStats, StepStats, TensorSummary

LAYERS = ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias")
UNIT = TensorSummary(mean=0.0, std=1.0, abs_max=3.2)


def healthy(n: int = 300, seed: int = 0, batch_size: int = 32, layer_every: int = 5, data_batches: int = 3,
            steps_per_epoch: int | None = None, last_batch: int | None = None) -> list[StepStats]:
    """A noisy, decreasing loss; ordinary gradients; unit-scale data; update ratios ~1e-3; healthy activations."""
    rng = np.random.default_rng(seed)
    out = []
    for step in range(n):
        loss = 2.0 * math.exp(-step / 150) + 0.1
        loss *= math.exp(rng.normal(0, 0.08))
        size = batch_size
        epoch = None
        if steps_per_epoch:
            epoch = step // steps_per_epoch
            if last_batch and step % steps_per_epoch == steps_per_epoch - 1:
                size = last_batch
        grad_norm = float(1.0 * math.exp(rng.normal(0, 0.2)))
        sampled = step % layer_every == 0
        layers = tuple(
            LayerStats(name, grad_norm=grad_norm * (0.5 + 0.1 * i) * math.exp(rng.normal(0, 0.1)),
                       weight_norm=5.0, update_ratio=1e-3 * math.exp(rng.normal(0, 0.3)))
            for i, name in enumerate(LAYERS)) if sampled else ()
        acts = (ActivationStats("act1", "relu", dead_fraction=0.1, output_std=0.8),
                ActivationStats("act2", "relu", dead_fraction=0.15, output_std=0.7),
                ActivationStats("(output)", "output", output_std=0.9)) if sampled else ()
        out.append(StepStats(
            step=step, loss=float(loss), epoch=epoch, batch_size=size, lrs=(0.01,), grad_norm=grad_norm,
            layers=layers, activations=acts, eval_mode_modules=() if sampled else None,
            inputs=UNIT if step < data_batches else None, targets=UNIT if step < data_batches else None))
    return out


def with_data(stats: list[StepStats], inputs: TensorSummary | None = None,
              targets: TensorSummary | None = None) -> list[StepStats]:
    return [replace(s, inputs=inputs or s.inputs, targets=targets or s.targets) if s.inputs is not None else s
            for s in stats]


def explode(stats: list[StepStats], start: int, nan_at: int | None = None, factor: float = 4.0) -> list[StepStats]:
    """The gradient norm and loss grow by ``factor`` per step from ``start``; non-finite from ``nan_at``."""
    out = []
    for s in stats:
        if s.step < start:
            out.append(s)
            continue
        k = s.step - start + 1
        if nan_at is not None and s.step >= nan_at:
            out.append(replace(s, loss=math.nan, grad_norm=math.nan, loss_finite=False, grads_finite=False,
                               layers=(), activations=()))
            continue
        layers = tuple(replace(l, grad_norm=l.grad_norm * factor ** k, update_ratio=0.05 * k) for l in s.layers)
        out.append(replace(s, loss=s.loss * factor ** k, grad_norm=s.grad_norm * factor ** k, layers=layers))
    return out


def update_ratios(stats: list[StepStats], ratio: float) -> list[StepStats]:
    return [replace(s, layers=tuple(replace(l, update_ratio=ratio) for l in s.layers)) for s in stats]
