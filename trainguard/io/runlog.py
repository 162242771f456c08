"""The run log: append-only JSONL, the one contract between the live guard, the doctor, diff and the reports.

Schema ``trainguard.runlog`` version 1 (docs/runlog.md). One JSON object per line, each with a ``type``:

- ``header``: first line. ``schema``, ``version``, ``created``, ``framework``, ``config`` (policy, preset),
  ``parameters`` (parameter names in forward order).
- ``step``: one :class:`StepStats` (``StepStats.to_dict``), for every recorded step.
- ``finding``: one :class:`Finding`.
- ``action``: one :class:`Action` (a repair carried out).
- ``event``: anything else worth keeping, e.g. ``{"kind": "internal_error", "message": ...}``.
- ``diagnosis``: once, at close, before ``end``: ``causes``, the ranked root causes (``Cause.to_dict()`` each).
- ``end``: last line of a run that closed cleanly: ``status`` and ``steps``.

A writer appends to an existing file rather than overwrite it; the reader then reads the last run in it.
Every line is flushed as it is written, so a crash loses at most the line being written; the reader skips a
truncated last line and says so in ``problems``.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterable

from trainguard.core.actions import Action
from trainguard.core.findings import Finding
from trainguard.core.stats import StepStats

__all__ = ["SCHEMA", "SCHEMA_VERSION", "RunLogWriter", "RunLog", "RunLogError", "read_runlog", "is_runlog"]

SCHEMA = "trainguard.runlog"
SCHEMA_VERSION = 1


class RunLogError(ValueError):
    """A file that is not a readable run log; the message is one line, fit for the user."""


class RunLogWriter:
    """Appends records to a run log, one flushed line each."""

    def __init__(self, path: str | os.PathLike[str], *, framework: str = "", config: dict[str, Any] | None = None,
                 parameters: Iterable[str] = ()):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = open(self.path, "a", encoding="utf-8")
        self.steps = 0
        self._write({
            "type": "header",
            "schema": SCHEMA,
            "version": SCHEMA_VERSION,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "framework": framework,
            "config": config or {},
            "parameters": list(parameters),
        })

    def _write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            raise RunLogError(f"run log {self.path} is closed")
        try:  # the usual record holds no NaN/Inf: encoded as is, without first copying it
            line = json.dumps(record, separators=(",", ":"), default=_json_default, allow_nan=False)
        except ValueError:
            line = json.dumps(_encode_non_finite(record), separators=(",", ":"), default=_json_default,
                              allow_nan=False)
        self._file.write(line + "\n")
        self._file.flush()

    def step(self, stats: StepStats) -> None:
        self.steps += 1
        self._write({"type": "step", **stats.to_dict()})

    def finding(self, finding: Finding) -> None:
        self._write({"type": "finding", **finding.to_dict()})

    def action(self, action: Action) -> None:
        self._write({"type": "action", **action.to_dict()})

    def event(self, kind: str, step: int | None = None, **data: Any) -> None:
        self._write({"type": "event", "kind": kind, "step": step, **data})

    def diagnosis(self, causes: Iterable[Any]) -> None:
        """The run's ranked root causes, each a ``trainguard.core.diagnosis.Cause`` or its ``to_dict()``."""
        self._write({"type": "diagnosis",
                     "causes": [dict(c) if isinstance(c, dict) else c.to_dict() for c in causes]})

    def close(self, status: str = "ok") -> None:
        if self._file is None:
            return
        self._write({"type": "end", "status": status, "steps": self.steps})
        self._file.close()
        self._file = None

    @property
    def closed(self) -> bool:
        return self._file is None


def _encode_non_finite(value: Any) -> Any:
    """JSON has no NaN/Inf: write them as the strings "nan", "inf", "-inf", which ``float()`` reads back."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _encode_non_finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode_non_finite(v) for v in value]
    if hasattr(value, "item") and hasattr(value, "dtype"):  # numpy scalar
        return _encode_non_finite(value.item())
    return value


def _json_default(value: Any) -> Any:
    # numpy scalars and tuples of them reach the log from adapters; keep the writer forgiving.
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


@dataclass
class RunLog:
    path: Path
    header: dict[str, Any]
    steps: list[StepStats] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    end: dict[str, Any] | None = None
    diagnosis: list[dict[str, Any]] | None = None  # the causes of the ``diagnosis`` record; None: no such record
    problems: list[str] = field(default_factory=list)  # lines that could not be read, one message each


def is_runlog(path: str | os.PathLike[str]) -> bool:
    """True when the file's first line is a trainguard run-log header."""
    try:
        with open(path, encoding="utf-8") as f:
            first = json.loads(f.readline())
        return isinstance(first, dict) and first.get("schema") == SCHEMA
    except (OSError, ValueError, UnicodeDecodeError):
        return False


def read_runlog(path: str | os.PathLike[str]) -> RunLog:
    """Reads a run log. A bad line is skipped and listed in ``problems``; a file that is no run log at all
    raises :class:`RunLogError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunLogError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise RunLogError(f"{path}: is a directory, not a run log") from None
    except UnicodeDecodeError:
        raise RunLogError(f"{path}: not UTF-8 text, so not a trainguard run log") from None
    except OSError as e:
        raise RunLogError(f"{path}: cannot read ({e.strerror})") from None
    lines = text.splitlines()
    if not lines:
        raise RunLogError(f"{path}: empty file, not a trainguard run log")
    try:
        header = json.loads(lines[0])
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("schema") != SCHEMA:
        raise RunLogError(f"{path}: first line is not a trainguard run-log header")
    if int(header.get("version", 0)) > SCHEMA_VERSION:
        raise RunLogError(f"{path}: run-log version {header.get('version')} is newer than this trainguard reads "
                          f"({SCHEMA_VERSION}); upgrade trainguard")
    log = RunLog(path=path, header=header)
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            kind = record.pop("type")
            if kind == "step":
                log.steps.append(StepStats.from_dict(record))
            elif kind == "finding":
                log.findings.append(Finding.from_dict(record))
            elif kind == "action":
                log.actions.append(Action.from_dict(record))
            elif kind == "event":
                log.events.append(record)
            elif kind == "end":
                log.end = record
            elif kind == "diagnosis":
                causes = record["causes"]
                if not isinstance(causes, list) or not all(isinstance(c, dict) for c in causes):
                    raise TypeError("causes is not a list of objects")
                log.diagnosis = causes
            elif kind == "header":
                # A later run appended to the same file: the newest run is the one read.
                log = RunLog(path=path, header=record, problems=log.problems + [
                    f"line {number}: file holds more than one run; reading the last"])
            else:
                log.problems.append(f"line {number}: unknown record type {kind!r}")
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            tail = " (truncated last line)" if number == len(lines) else ""
            log.problems.append(f"line {number}: unreadable record{tail}: {type(e).__name__}")
    return log
