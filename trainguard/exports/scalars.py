"""What an exporter receives (:data:`Record`), a step's numbers as flat scalar names (:func:`scalars`) and a
validation result's (:func:`validation_scalars`), for the exporters of ``trainguard.exports``."""
from __future__ import annotations

import math
from typing import Any, Callable, Union

from trainguard.core.actions import Action
from trainguard.core.findings import Finding
from trainguard.core.stats import StepStats
from trainguard.core.validation import Validation

__all__ = ["Record", "Exporter", "scalars", "validation_scalars"]

Record = Union[StepStats, Finding, Action, Validation]
Exporter = Callable[[Record], Any]


def scalars(stats: StepStats) -> dict[str, float]:
    """A step's numbers as flat scalar names (``loss``, ``grad_norm``, ``lr/0``, ``grad_norm/<layer>``,
    ``update_ratio/<layer>``, ``adam_update_rms/<layer>``, ``applied``), the missing ones left out."""
    out: dict[str, float] = {}
    if stats.loss is not None:
        out["loss"] = stats.loss
    if stats.grad_norm is not None:
        out["grad_norm"] = stats.grad_norm
    for i, lr in enumerate(stats.lrs):
        out[f"lr/{i}"] = lr
    out["applied"] = 1.0 if stats.applied else 0.0
    for layer in stats.layers:
        for key in ("grad_norm", "update_ratio", "adam_update_rms"):
            value = getattr(layer, key)
            if value is not None:
                out[f"{key}/{layer.name}"] = value
    for activation in stats.activations:
        health = activation.dead_fraction if activation.dead_fraction is not None else activation.saturated_fraction
        if health is not None and not math.isnan(health):
            out[f"{'dead' if activation.kind == 'relu' else 'saturated'}_fraction/{activation.name}"] = health
    return out


def validation_scalars(record: Validation) -> dict[str, float]:
    """A validation result's numbers as flat scalar names: ``val/loss``, ``val/<metric>`` and ``val/train_loss``
    (the training loss's level when the model was evaluated), the missing ones left out."""
    out = {f"val/{name}": value for name, value in record.metrics.items()}
    if record.loss is not None:
        out["val/loss"] = record.loss
    if record.train_loss is not None:
        out["val/train_loss"] = record.train_loss
    return out
