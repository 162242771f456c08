"""TensorBoard export through torch's standard writer, ``torch.utils.tensorboard.SummaryWriter``.

Scalars under ``<prefix>/`` (``trainguard/loss``, ``trainguard/grad_norm``, ``trainguard/grad_norm/fc1.weight``,
see :func:`trainguard.exports.scalars`), one point per recorded step; validation results as ``<prefix>/val/loss``
and ``<prefix>/val/<metric>`` at their step; findings and actions as text
(``trainguard/findings``, ``trainguard/actions``) at their step. Needs the ``tensorboard`` extra.
"""
from __future__ import annotations

import os
from typing import Any

from trainguard.core.actions import Action
from trainguard.core.findings import Finding
from trainguard.core.stats import StepStats
from trainguard.core.validation import Validation
from trainguard.exports.scalars import Record, scalars, validation_scalars

__all__ = ["TensorBoardExporter"]


class TensorBoardExporter:
    """An exporter writing to TensorBoard.

    Args:
        log_dir: a directory for a new ``SummaryWriter``, or an existing writer (the user's own, shared with
            their metrics); a writer passed in is flushed at the end but left open.
        prefix: the tag prefix.
    """

    def __init__(self, log_dir: str | os.PathLike[str] | Any, prefix: str = "trainguard"):
        if hasattr(log_dir, "add_scalar"):
            self.writer, self._owned = log_dir, False
        else:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ImportError("TensorBoardExporter needs tensorboard: pip install 'trainguard[tensorboard]'"
                                  ) from e
            self.writer, self._owned = SummaryWriter(log_dir=os.fspath(log_dir)), True
        self.prefix = prefix.rstrip("/")

    def __call__(self, record: Record) -> None:
        if isinstance(record, StepStats):
            for name, value in scalars(record).items():
                self.writer.add_scalar(f"{self.prefix}/{name}", value, record.step)
        elif isinstance(record, Validation):
            for name, value in validation_scalars(record).items():
                self.writer.add_scalar(f"{self.prefix}/{name}", value, record.step)
        elif isinstance(record, Finding):
            self.writer.add_text(f"{self.prefix}/findings",
                                 f"**{record.severity.name} {record.code}** ({record.where}): {record.message}",
                                 record.step)
        elif isinstance(record, Action):
            self.writer.add_text(f"{self.prefix}/actions", f"**{record.kind}** (reason: {record.reason}) "
                                 f"params {record.params} effect {record.effect}", record.step)

    def close(self) -> None:
        if self._owned:
            self.writer.close()
        else:
            self.writer.flush()
