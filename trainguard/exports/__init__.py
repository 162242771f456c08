"""Exporters: each run-log record, as it is written, handed to TensorBoard, W&B, MLflow or a function of yours.

An exporter is any callable taking one record: a :class:`~trainguard.core.stats.StepStats` per recorded step,
a :class:`~trainguard.core.findings.Finding` per finding, an :class:`~trainguard.core.actions.Action` per repair.
If it also has a ``close()`` method, the guard calls it when the run ends. Pass a list of them to the guard::

    def to_wandb(record):
        if isinstance(record, StepStats):
            wandb.log(trainguard.exports.scalars(record), step=record.step)

    guard = trainguard.Guard(model, optimizer, exporters=[to_wandb, TensorBoardExporter("runs/tb")])

Exporters see exactly what the run log gets, when it gets it (up to ``fetch_every - 1`` steps late on GPU), on
rank 0 only under torch.distributed. One that raises is switched off with a warning; the run and its log go on.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Iterable, Union

from trainguard.core.actions import Action
from trainguard.core.findings import Finding
from trainguard.core.stats import StepStats

__all__ = ["Record", "Exporter", "ExportingLog", "scalars", "check_exporters", "TensorBoardExporter"]

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


def check_exporters(exporters: Iterable[Any]) -> list[Exporter]:
    """The exporters as a list; a clear error for anything that cannot take a record."""
    if callable(exporters):
        raise TypeError("exporters= takes a list of exporters, e.g. exporters=[my_function]")
    out = list(exporters)
    for exporter in out:
        if not callable(exporter):
            raise TypeError(f"an exporter must be callable with one record, got {type(exporter).__name__}")
    return out


class ExportingLog:
    """The guard's run log (or None) plus its exporters, behind the run log writer's own methods."""

    def __init__(self, log: Any, exporters: list[Exporter]):
        self.inner = log
        self.exporters = exporters

    @property
    def path(self) -> Any:
        return getattr(self.inner, "path", None)

    @property
    def closed(self) -> bool:
        return self.inner.closed if self.inner is not None else not self.exporters

    def step(self, stats: StepStats) -> None:
        self._forward("step", stats)

    def finding(self, finding: Finding) -> None:
        self._forward("finding", finding)

    def action(self, action: Action) -> None:
        self._forward("action", action)

    def event(self, kind: str, step: int | None = None, **data: Any) -> None:
        if self.inner is not None:
            self.inner.event(kind, step, **data)

    def close(self, status: str = "ok") -> None:
        exporters, self.exporters = self.exporters, []
        for exporter in exporters:
            close = getattr(exporter, "close", None)
            if callable(close):
                self._contain(exporter, close)
        if self.inner is not None:
            self.inner.close(status)

    def _forward(self, method: str, record: Record) -> None:
        if self.inner is not None:
            getattr(self.inner, method)(record)  # the run log's own errors are the guard's to contain
        for exporter in list(self.exporters):
            self._contain(exporter, exporter, record)

    def _contain(self, exporter: Exporter, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - a broken exporter must not stop the run or its log
            if exporter in self.exporters:
                self.exporters.remove(exporter)
            name = getattr(exporter, "__name__", type(exporter).__name__)
            warnings.warn(f"trainguard: exporter {name} failed ({type(e).__name__}: {e}); it is switched off, "
                          "training and the run log continue", RuntimeWarning, stacklevel=2)


def __getattr__(name: str) -> Any:
    if name == "TensorBoardExporter":  # imports torch's TensorBoard writer only when asked for
        from trainguard.exports.tensorboard import TensorBoardExporter
        return TensorBoardExporter
    raise AttributeError(f"module 'trainguard.exports' has no attribute {name!r}")
