"""``parse``: what the reader could not take from the file as written.

Repeated or backtracking steps (a run resumed from a checkpoint) are expected and only information; skipped
lines, cells that are not numbers, undecodable bytes or a truncated file are warnings, because the analysis ran
on part of the log.
"""
from __future__ import annotations

from trainguard.core.findings import Severity
from trainguard.doctor.analysis.signals import Signals
from trainguard.doctor.findings import DoctorFinding

__all__ = ["analyse_parse"]

_BENIGN = ("repeat the previous step", "go back", "more than one run", "loss columns")


def analyse_parse(sig: Signals) -> list[DoctorFinding]:
    problems = sig.series.problems
    if not problems:
        return []
    benign = all(any(marker in p for marker in _BENIGN) for p in problems)
    severity = Severity.INFO if benign else Severity.WARNING
    step = float(sig.series.step[0]) if len(sig.series.step) else 0.0
    message = problems[0] if len(problems) == 1 else f"{problems[0]} (and {len(problems) - 1} more)"
    return [DoctorFinding("parse", severity, step, "none", {"problems": problems[:20]}, message)]
