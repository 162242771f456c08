"""Exporters: each run-log record, as it is written, handed to TensorBoard, W&B, MLflow or a function of yours.

An exporter is any callable taking one record: a :class:`~trainguard.core.stats.StepStats` per recorded step,
a :class:`~trainguard.core.findings.Finding` per finding, an :class:`~trainguard.core.actions.Action` per repair,
a :class:`~trainguard.core.validation.Validation` per validation result (``validation_scalars`` flattens it).
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

from typing import Any

from trainguard.core.session import check_exporters
from trainguard.exports.scalars import Exporter, Record, scalars, validation_scalars

__all__ = ["Record", "Exporter", "scalars", "validation_scalars", "check_exporters", "TensorBoardExporter"]


def __getattr__(name: str) -> Any:
    if name == "TensorBoardExporter":  # imports torch's TensorBoard writer only when asked for
        from trainguard.exports.tensorboard import TensorBoardExporter
        return TensorBoardExporter
    raise AttributeError(f"module 'trainguard.exports' has no attribute {name!r}")
