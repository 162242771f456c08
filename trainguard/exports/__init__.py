"""Exporters: each run-log record, as it is written, handed to TensorBoard, W&B, MLflow or a function of yours.

An exporter is any callable taking one record: a :class:`~trainguard.core.stats.StepStats` per recorded step,
a :class:`~trainguard.core.findings.Finding` per finding, an :class:`~trainguard.core.actions.Action` per repair.
If it also has a ``close()`` method, the guard calls it when the run ends. Pass a list of them to the guard::

    def to_wandb(record):
        if isinstance(record, StepStats):
            wandb.log(trainguard.exports.scalars(record), step=record.step)

    guard = trainguard.Guard(model, optimizer, exporters=[to_wandb, TensorBoardExporter("runs/tb")])

Exporters see exactly what the run log gets, when it gets it (up to ``fetch_every - 1`` steps late on GPU), on
rank 0 only under torch.distributed. One that raises is switched off and reported once (a warning and a
``guard_internal_error`` finding, see :mod:`trainguard.core.containment`); the run and its log go on.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Union

from trainguard.core.actions import Action
from trainguard.core.findings import Finding
from trainguard.core.session import check_exporters
from trainguard.core.stats import StepStats

__all__ = ["Record", "Exporter", "scalars", "check_exporters", "TensorBoardExporter"]

Record = Union[StepStats, Finding, Action]
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


def __getattr__(name: str) -> Any:
    if name == "TensorBoardExporter":  # imports torch's TensorBoard writer only when asked for
        from trainguard.exports.tensorboard import TensorBoardExporter
        return TensorBoardExporter
    raise AttributeError(f"module 'trainguard.exports' has no attribute {name!r}")
