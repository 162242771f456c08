"""Root-cause diagnosis, for users: of a live run (``guard.diagnose()``, ``callback.diagnose()``) or of a run
log read back from disk (``diagnose_runlog``). The engine lives in ``trainguard.core.diagnosis``; the catalogue
of causes, their evidence and fixes is docs/causes.md.

>>> from trainguard.diagnosis import diagnose_runlog
>>> for cause in diagnose_runlog("runs/exp.jsonl"):                 # doctest: +SKIP
...     print(cause.code, cause.confidence, cause.message)
...     print(cause.fix)
"""
from __future__ import annotations

import os

from trainguard.core.diagnosis import Cause, Fix, diagnose, top_code
from trainguard.io.runlog import RunLog, read_runlog

__all__ = ["diagnose", "diagnose_runlog", "diagnose_log", "framework_of", "Cause", "Fix", "top_code"]


def framework_of(log: RunLog) -> str:
    """``"keras"`` or ``"torch"`` from the run log's header (``"torch 2.13.0"``, ``"keras 3.6.0"``)."""
    return "keras" if str(log.header.get("framework", "")).lower().startswith("keras") else "torch"


def diagnose_log(log: RunLog, framework: str | None = None) -> list[Cause]:
    """Ranked causes of a run log already read; the fixes are for the log's framework unless told otherwise."""
    return diagnose(log.steps, log.findings, framework or framework_of(log), actions=log.actions)


def diagnose_runlog(path: str | os.PathLike[str], framework: str | None = None) -> list[Cause]:
    """Reads a run log and diagnoses it. Raises ``RunLogError`` (a one-line message) for a file that is no
    run log."""
    return diagnose_log(read_runlog(path), framework)
