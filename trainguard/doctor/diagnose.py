"""Diagnosing finished runs: read each log, run the whole-series analyses and the streaming detectors, and
feed what the log carries (loss, LR, gradient norm, batch size, evaluation loss, at whatever interval) with
those findings into the one diagnosis engine (``trainguard.core.diagnosis.diagnose``), the live guard's.

A trainguard run log is diagnosed exactly as ``trainguard.diagnosis.diagnose_runlog`` does (its full
statistics and the findings the guard logged), so the doctor and the guard name the same causes. Each finding
of warning or above carries the run's top cause (``top_code``: possibly ``"uncertain"``); information-level
findings carry ``"none"``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from trainguard.core.causes import CAUSES
from trainguard.core.diagnosis import Cause, diagnose, top_code
from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import StepStats
from trainguard.doctor.analysis import analyse_series
from trainguard.doctor.findings import DoctorFinding, json_safe
from trainguard.doctor.readers import read_run
from trainguard.doctor.series import ReadError, RunSeries
from trainguard.doctor.streaming import adopt, replay

__all__ = ["RunDiagnosis", "diagnose_series", "diagnose_file", "run_causes", "series_stats", "ENGINE_LIMIT"]

# Rows fed to the engine; a longer log is thinned evenly (its non-finite rows kept), as the engine replays its
# signal detectors in Python, step by step.
ENGINE_LIMIT = 20_000


@dataclass
class RunDiagnosis:
    """One file's result: its series and findings, or the one-line reason it could not be read."""

    path: Path
    series: RunSeries | None = None
    findings: list[DoctorFinding] = field(default_factory=list)
    error: str | None = None
    causes: list[Cause] = field(default_factory=list)

    @property
    def cause(self) -> str:
        return top_code(self.causes)

    @property
    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": str(self.path)}
        if self.series is not None:
            out["format"] = self.series.format
            out["steps"] = len(self.series)
            out["columns"] = dict(self.series.columns)
        if self.error is not None:
            out["error"] = self.error
        out["findings"] = [f.to_dict() for f in self.findings]
        if self.series is not None:
            out["cause"] = self.cause
            out["causes"] = [json_safe(c.to_dict()) for c in self.causes]
        return out


def diagnose_series(series: RunSeries) -> list[DoctorFinding]:
    """Every finding for one run, ordered by step then severity (worst first), each carrying the run's cause."""
    return diagnose_run(series)[0]


def diagnose_run(series: RunSeries) -> tuple[list[DoctorFinding], list[Cause]]:
    """The findings of one run and its ranked causes, from the one diagnosis engine."""
    found = analyse_series(series)
    own_codes = {f.code for f in found}
    found.extend(corroborate(adopt(replay(series), "streaming detectors"), found, series))
    # What the live guard logged and the doctor did not find itself (it may have repaired it in time).
    found.extend(f for f in adopt_logged(series) if f.code not in own_codes)
    with np.errstate(all="ignore"):
        causes = run_causes(series, found)
    code = top_code(causes)
    found = [f._replace(cause=code if f.severity >= Severity.WARNING else "none") for f in found]
    return sorted(found, key=lambda f: (f.step, -int(f.severity))), causes


def run_causes(series: RunSeries, found: list[DoctorFinding]) -> list[Cause]:
    """The engine's causes: a run log's own statistics and logged findings, as ``diagnose_runlog`` reads them;
    any other log's columns as statistics, with the doctor's findings."""
    if series.format == "runlog" and series.path.is_file():
        from trainguard.diagnosis import diagnose_log
        from trainguard.io.runlog import read_runlog

        try:
            return diagnose_log(read_runlog(series.path))
        except Exception:  # a log that changed since it was read: diagnose what the doctor read instead
            pass
    stats, step_of = series_stats(series)
    findings = [Finding(f.code, f.severity, step_of(f.step), f.evidence.get("where"), f.evidence, f.message)
                for f in found]
    return diagnose(stats, findings)


def series_stats(series: RunSeries, limit: int = ENGINE_LIMIT):
    """The log's rows as ``StepStats`` (at most ``limit``, thinned evenly, non-finite rows kept; the evaluation
    rows reach the engine as the overfitting detector's findings, not here), and the function that maps a step
    of the log to a step of those statistics (the row index when the log's steps are not whole numbers, as for
    epoch fractions)."""
    n = len(series)
    whole = bool(n) and bool(np.all(np.isfinite(series.step))) and bool(np.all(series.step == np.round(series.step)))
    steps = series.step.astype(np.int64) if whole else np.arange(n, dtype=np.int64)

    def step_of(step: float) -> int:
        if whole:
            return int(round(step))
        return int(min(np.searchsorted(series.step, step), max(0, n - 1)))

    keep = np.zeros(n, dtype=bool)
    keep[np.linspace(0, n - 1, min(n, limit)).astype(np.int64)] = True
    keep |= ~np.isfinite(series.loss)
    columns = {role: getattr(series, role) for role in ("lr", "grad_norm", "batch_size", "epoch")}
    out = []
    for i in np.flatnonzero(keep).tolist():
        loss = float(series.loss[i])
        lr, grad, batch, epoch = (float(c[i]) if c is not None else math.nan for c in columns.values())
        out.append(StepStats(step=int(steps[i]), loss=loss, loss_finite=math.isfinite(loss),
                             lrs=(lr,) if math.isfinite(lr) else (),
                             grad_norm=grad if not math.isnan(grad) else None, grads_finite=not math.isinf(grad),
                             batch_size=int(batch) if math.isfinite(batch) and batch > 0 else None,
                             epoch=int(epoch) if math.isfinite(epoch) else None))
    return out, step_of


# A streaming finding is corroborated by a whole-series finding of one of these codes near its step.
_CORROBORATED_BY = {"exploding_gradient": {"non_finite", "divergence", "loss_spike", "periodic_spike", "oscillation"},
                    "vanishing_gradient": {"plateau"}}


def corroborate(streamed: list[DoctorFinding], own: list[DoctorFinding], series: RunSeries) -> list[DoctorFinding]:
    """With the whole run in view, a streaming warning that the loss never felt (an online detector's best
    guess at that step) is demoted to information; one that a whole-series finding backs up keeps its
    severity. A plateau backs up vanishing gradients wherever it starts."""
    span = float(series.step[-1] - series.step[0]) if len(series) else 0.0
    near = max(10.0, 0.02 * span)
    serious = [f for f in own if f.severity >= Severity.WARNING]
    out = []
    for f in streamed:
        codes = _CORROBORATED_BY.get(f.code, set())
        backed = any(o.code in codes and (o.code == "plateau" or abs(o.step - f.step) <= near) for o in serious)
        if f.severity >= Severity.WARNING and not backed:
            f = f._replace(severity=Severity.INFO,
                           evidence={**f.evidence, "hindsight": "the loss did not suffer: no whole-run finding "
                                                                "near this step"})
        out.append(f)
    return out


def adopt_logged(series: RunSeries) -> list[DoctorFinding]:
    out = []
    for f in series.logged_findings:
        cause = f.evidence.get("cause", "none")
        actions = [a.kind for a in series.logged_actions if a.step >= f.step][:5]
        evidence = {**f.evidence, "source": "run log"}
        if actions:
            evidence["guard_actions_after"] = actions
        out.append(DoctorFinding(f.code, f.severity, float(f.step), cause if isinstance(cause, str) else "none",
                                 evidence, f.message))
    return [f if f.cause in CAUSES else f._replace(cause="none") for f in out]


def diagnose_file(path: Path, overrides: dict[str, str | None] | None = None,
                  analyse: Callable[[RunSeries], list[DoctorFinding]] = diagnose_series) -> RunDiagnosis:
    try:
        series = read_run(path, overrides)
    except ReadError as e:
        message = str(e)
        return RunDiagnosis(path, error=message if message.startswith(str(path)) else f"{path}: {message}")
    except Exception as e:  # as below: a reader bug costs this file only
        return RunDiagnosis(path, error=f"{path}: trainguard could not analyse this log while reading it "
                                        f"({type(e).__name__}: {e}); please report it")
    try:
        if analyse is diagnose_series:
            findings, causes = diagnose_run(series)
            return RunDiagnosis(path, series, findings, causes=causes)
        return RunDiagnosis(path, series, analyse(series))
    except Exception as e:  # a bug of ours must cost one file, not the whole report, and never a traceback
        return RunDiagnosis(path, series, error=f"{path}: trainguard could not analyse this log "
                                                f"({type(e).__name__}: {e}); please report it")
