"""Replaying a finished run through the live guard's streaming detectors (``default_detectors()`` in a
``Monitor``), so the doctor and the guard agree on what a step-level detector sees.

The whole-series analyses see the entire run and supersede a streaming finding of the same code; the others
(exploding or vanishing gradients...) are kept with the cause their evidence names, if any. The replay costs a
Python call per step, so logs longer than ``STREAM_LIMIT`` rows are left to the vectorised analyses.
"""
from __future__ import annotations

import math

import numpy as np

from trainguard.core.causes import CAUSES
from trainguard.core.findings import Finding
from trainguard.core.monitor import Monitor
from trainguard.core.stats import StepStats
from trainguard.doctor.findings import CODES, DoctorFinding
from trainguard.doctor.series import RunSeries

__all__ = ["STREAM_LIMIT", "replay", "adopt"]

STREAM_LIMIT = 20_000


def replay(series: RunSeries) -> list[Finding]:
    """The streaming detectors' findings on this run; an error inside a detector is contained and reported
    as the empty list plus a parse-style note in ``series.problems``."""
    if len(series) > STREAM_LIMIT:
        return []
    monitor = Monitor()
    columns = {role: (getattr(series, role).tolist() if getattr(series, role) is not None else None)
               for role in ("lr", "grad_norm", "batch_size", "epoch")}
    try:
        for i, (step, loss) in enumerate(zip(series.step.tolist(), series.loss.tolist())):
            lr, grad, batch, epoch = (columns[r][i] if columns[r] is not None else math.nan
                                      for r in ("lr", "grad_norm", "batch_size", "epoch"))
            monitor.observe(StepStats(
                step=int(step), loss=loss, loss_finite=math.isfinite(loss),
                lrs=(lr,) if math.isfinite(lr) else (),
                grad_norm=grad if not math.isnan(grad) else None,
                grads_finite=not math.isinf(grad),
                batch_size=int(batch) if math.isfinite(batch) else None,
                epoch=int(epoch) if math.isfinite(epoch) else None,
            ))
    except Exception as e:  # a detector bug must not cost the user the doctor's own analyses
        series.problems.append(f"streaming detectors stopped at step {int(step)}: {type(e).__name__}: {e}")
    return monitor.findings


def adopt(findings: list[Finding], source: str) -> list[DoctorFinding]:
    """Doctor findings for streaming or logged findings whose code the whole-series analyses do not own."""
    out = []
    for f in findings:
        if f.code in CODES:
            continue
        named = f.evidence.get("cause")
        cause = named if named in CAUSES else (f.code if f.code in CAUSES else "none")
        evidence = {**_json_ready(f.evidence), "source": source}
        if f.where:
            evidence["where"] = f.where
        out.append(DoctorFinding(f.code, f.severity, float(f.step), cause, evidence, f.message))
    return out


def _json_ready(evidence: dict) -> dict:
    out = {}
    for key, value in evidence.items():
        if isinstance(value, (np.floating, np.integer)):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        out[key] = value
    return out
