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
    return MetricTable(values, present, list(log.problems)), log
