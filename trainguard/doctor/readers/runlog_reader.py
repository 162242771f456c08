"""trainguard's own run log: the steps as a table, plus the findings and repairs the live guard wrote."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from trainguard.doctor.series import MetricTable, ReadError
from trainguard.io.runlog import RunLog, RunLogError, read_runlog

__all__ = ["read_runlog_table"]

_FIELDS = ("step", "loss", "lr", "grad_norm", "batch_size", "epoch")


def read_runlog_table(path: Path) -> tuple[MetricTable, RunLog]:
    try:
        log = read_runlog(path)
    except RunLogError as e:
        raise ReadError(str(e)) from None
    if not log.steps:
        raise ReadError(f"{path}: the run log has no step records")
    n = len(log.steps)
    values = {name: np.full(n, np.nan) for name in _FIELDS}
    present = {name: np.zeros(n, dtype=bool) for name in _FIELDS}
    for i, stats in enumerate(log.steps):
        for name in _FIELDS:
            x = getattr(stats, name)
            if x is not None:
                values[name][i] = float(x)
                present[name][i] = True
        # A non-finite loss is a value, not a gap, even when the guard wrote only loss_finite=False.
        if not stats.loss_finite:
            present["loss"][i] = True
            if stats.loss is None:
                values["loss"][i] = np.nan
    _add_validations(log, values, present)
    return MetricTable(values, present, list(log.problems)), log


def _add_validations(log: RunLog, values: dict[str, np.ndarray], present: dict[str, np.ndarray]) -> None:
    """The validation records as evaluation rows after the training rows: ``eval_loss`` and ``val_<metric>``
    cells (no loss: they are no training rows)."""
    if not log.validations:
        return
    n, m = len(log.steps), len(log.validations)
    for name in values:
        values[name] = np.concatenate([values[name], np.full(m, np.nan)])
        present[name] = np.concatenate([present[name], np.zeros(m, dtype=bool)])
    names = {"eval_loss": "eval_loss"}
    names.update({metric: f"val_{metric}" for v in log.validations for metric in v.metrics})
    for column in names.values():
        values.setdefault(column, np.full(n + m, np.nan))
        present.setdefault(column, np.zeros(n + m, dtype=bool))
    for i, v in enumerate(log.validations, start=n):
        values["step"][i], present["step"][i] = float(v.step), True
        cells = {"eval_loss": v.loss, **v.metrics}
        for key, x in cells.items():
            if x is not None:
                values[names[key]][i], present[names[key]][i] = float(x), True
