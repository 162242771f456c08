"""``RunSeries``: one finished run's metrics as numpy arrays, whatever file they came from.

Readers build a :class:`MetricTable` (named columns of floats, with a mask of the cells the file really had),
and :func:`trainguard.doctor.columns.build_series` turns it into a ``RunSeries``: the training rows ordered by
step, the evaluation rows apart, and every problem met on the way, one line each.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trainguard.core.actions import Action
from trainguard.core.findings import Finding

__all__ = ["MetricTable", "RunSeries", "ReadError"]


class ReadError(ValueError):
    """A file the doctor cannot read at all; the message is one line, fit for the user."""


@dataclass
class MetricTable:
    """Columns of one file, row-aligned. ``present[name]`` is False where the cell was empty or missing (a
    Lightning row that logged only ``val_loss``); a cell that said "nan" is present and NaN."""

    values: dict[str, np.ndarray]
    present: dict[str, np.ndarray]
    problems: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(next(iter(self.values.values()))) if self.values else 0


@dataclass
class RunSeries:
    """Training rows ordered by step; optional columns are None when the log lacks them, NaN where a row
    lacks the value. ``eval_step``/``eval_loss`` hold the evaluation rows, which are usually sparser."""

    path: Path
    format: str
    step: np.ndarray
    loss: np.ndarray
    lr: np.ndarray | None = None
    grad_norm: np.ndarray | None = None
    batch_size: np.ndarray | None = None
    epoch: np.ndarray | None = None
    eval_step: np.ndarray | None = None
    eval_loss: np.ndarray | None = None
    # Evaluation metrics whose direction the name tells (``val_accuracy`` -> "accuracy"), at the evaluation rows.
    eval_metrics: dict[str, np.ndarray] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)  # role -> the file's column name
    # role -> rows whose cell the file really had, for the optional columns (NaN alone cannot tell a
    # logged "nan" from an empty cell).
    present: dict[str, np.ndarray] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    # The other training-loss columns of a log that has several (a GAN's loss_d and loss_g), not read.
    other_losses: tuple[str, ...] = ()
    # A trainguard run log also carries what the live guard found and did.
    logged_findings: list[Finding] = field(default_factory=list)
    logged_actions: list[Action] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.step)

    def optional(self, role: str) -> np.ndarray | None:
        """The column for ``role`` if it has at least one finite value."""
        values = getattr(self, role)
        if values is None or not np.isfinite(values).any():
            return None
        return values
