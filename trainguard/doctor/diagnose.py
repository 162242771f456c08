"""Diagnosing finished runs: read each log, run the whole-series analyses and the streaming detectors, and
collect the findings of every run."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from trainguard.core.causes import CAUSES
from trainguard.core.findings import Severity
from trainguard.doctor.analysis import analyse_series
from trainguard.doctor.findings import DoctorFinding
from trainguard.doctor.readers import read_run
from trainguard.doctor.series import ReadError, RunSeries
from trainguard.doctor.streaming import adopt, replay

__all__ = ["RunDiagnosis", "diagnose_series", "diagnose_file"]


@dataclass
class RunDiagnosis:
    """One file's result: its series and findings, or the one-line reason it could not be read."""

    path: Path
    series: RunSeries | None = None
    findings: list[DoctorFinding] = field(default_factory=list)
    error: str | None = None

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
        return out


def diagnose_series(series: RunSeries) -> list[DoctorFinding]:
    """Every finding for one run, ordered by step then severity (worst first)."""
    found = analyse_series(series)
    own_codes = {f.code for f in found}
    found.extend(corroborate(adopt(replay(series), "streaming detectors"), found, series))
    # What the live guard logged and the doctor did not find itself (it may have repaired it in time).
    found.extend(f for f in adopt_logged(series) if f.code not in own_codes)
    return sorted(found, key=lambda f: (f.step, -int(f.severity)))


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
        return RunDiagnosis(path, series, analyse(series))
    except Exception as e:  # a bug of ours must cost one file, not the whole report, and never a traceback
        return RunDiagnosis(path, series, error=f"{path}: trainguard could not analyse this log "
                                                f"({type(e).__name__}: {e}); please report it")
