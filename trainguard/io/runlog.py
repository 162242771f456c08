"""The run log: append-only JSONL, the one contract between the live guard, the doctor, diff and the reports.

Schema ``trainguard.runlog`` version 1 (docs/runlog.md). One JSON object per line, each with a ``type``:

- ``header``: first line. ``schema``, ``version``, ``created``, ``framework``, ``config`` (policy, preset),
  ``parameters`` (parameter names in forward order).
- ``step``: one :class:`StepStats` (``StepStats.to_dict``), for every recorded step.
- ``finding``: one :class:`Finding`.
- ``action``: one :class:`Action` (a repair carried out).
- ``validation``: one :class:`Validation` (a held-out loss and metrics, recorded when the run evaluated).
- ``event``: anything else worth keeping, e.g. ``{"kind": "internal_error", "message": ...}``.
- ``diagnosis``: once, at close, before ``end``: ``causes``, the ranked root causes (``Cause.to_dict()`` each).
- ``end``: last line of a run that closed cleanly: ``status`` and ``steps``.

A writer appends to an existing run log (never to another kind of file) rather than overwrite it, and holds
an exclusive lock on it while open; the reader reads the last run in the file.
Every line is flushed as it is written, so a crash loses at most the line being written; the reader skips a
truncated last line and says so in ``problems``.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterable

from trainguard.core.actions import Action
from trainguard.core.findings import Finding
from trainguard.core.stats import StepStats
from trainguard.core.validation import Validation
from trainguard.io.files import InputError, local_copy

try:
    import fcntl
except ImportError:  # Windows: no advisory lock; one writer per log is then the user's to keep
    fcntl = None  # type: ignore[assignment]

__all__ = ["SCHEMA", "SCHEMA_VERSION", "RunLogWriter", "RunLog", "RunLogError", "RunLogInUseError", "read_runlog",
           "read_header", "is_runlog"]

SCHEMA = "trainguard.runlog"
SCHEMA_VERSION = 1
MAX_LINE_BYTES = 64 << 20  # a forensic step of a model with thousands of tensors is well under 1 MB


class RunLogError(ValueError):
    """A file that is not a readable run log; the message is one line, fit for the user."""


class RunLogInUseError(RunLogError):
    """Another writer (a guard in this or another process) holds the run log open."""


class RunLogWriter:
    """Appends records to a run log, one flushed line each.

    The writer holds an exclusive lock on the file (``fcntl.flock``, POSIX) from construction to :meth:`close`,
    so two guards never interleave their records in one log: the second raises :class:`RunLogInUseError`. It
    appends only to an empty file or to a trainguard run log, never to another file the user named by mistake.
    """

    def __init__(self, path: str | os.PathLike[str], *, framework: str = "", config: dict[str, Any] | None = None,
                 parameters: Iterable[str] = ()):
        self.path = Path(path)
        if self.path.is_dir():
            raise RunLogError(f"{self.path}: is a directory; name a file for the run log")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] | None = open(self.path, "a+b")
        try:
            _lock(self._file, self.path)
            _check_appendable(self._file, self.path)
        except BaseException:
            self._file.close()
            raise
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
        self._file.write(line.encode("utf-8") + b"\n")
        self._file.flush()

    def step(self, stats: StepStats) -> None:
        self.steps += 1
        self._write({"type": "step", **stats.to_dict()})

    def finding(self, finding: Finding) -> None:
        self._write({"type": "finding", **finding.to_dict()})

    def action(self, action: Action) -> None:
        self._write({"type": "action", **action.to_dict()})

    def validation(self, record: Validation) -> None:
        self._write({"type": "validation", **record.to_dict()})

    def event(self, kind: str, step: int | None = None, **data: Any) -> None:
        self._write({"type": "event", "kind": kind, "step": step, **data})

    def diagnosis(self, causes: Iterable[Any]) -> None:
        """The run's ranked root causes, each a ``trainguard.core.diagnosis.Cause`` or its ``to_dict()``."""
        self._write({"type": "diagnosis",
                     "causes": [dict(c) if isinstance(c, dict) else c.to_dict() for c in causes]})

    def close(self, status: str = "ok") -> None:
        if self._file is None:
            return
        try:
            self._write({"type": "end", "status": status, "steps": self.steps})
        finally:
            if fcntl is not None:  # explicitly: a forked DataLoader worker may still share the open file
                with contextlib.suppress(OSError):  # a file system without locks
                    fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
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
    validations: list[Validation] = field(default_factory=list)
    end: dict[str, Any] | None = None
    diagnosis: list[dict[str, Any]] | None = None  # the causes of the ``diagnosis`` record; None: no such record
    problems: list[str] = field(default_factory=list)  # lines that could not be read, one message each


def _lock(file: IO[bytes], path: Path) -> None:
    if fcntl is None:
        return
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RunLogInUseError(f"{path}: another trainguard guard (in this or another process) is writing this run "
                               f"log; close it first or give each run its own log path") from None
    except OSError:
        pass  # a file system without locks (some network mounts): write unlocked rather than not at all


def _check_appendable(file: IO[bytes], path: Path) -> None:
    """Refuses a non-empty regular file that is not a run log; after a torn last line, starts a new one."""
    if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
        return  # /dev/null and the like: nothing to protect
    size = file.seek(0, os.SEEK_END)
    if size == 0:
        return
    file.seek(0)
    if not _is_header_line(file.readline(MAX_LINE_BYTES)):
        raise RunLogError(f"{path}: holds something other than a trainguard run log; trainguard appends only to "
                          f"its own logs, so choose another log path")
    file.seek(size - 1)
    if file.read(1) != b"\n":  # a run that died mid-line: start ours on a line of its own
        file.write(b"\n")


def _loads(line: bytes | str) -> Any:
    """``json.loads`` with every way a hostile line can fail (bad JSON, nesting too deep, not UTF-8) as
    ValueError."""
    try:
        return json.loads(line)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _is_header_line(line: bytes) -> bool:
    try:
        first = _loads(line)
    except ValueError:
        return False
    return isinstance(first, dict) and first.get("schema") == SCHEMA


def is_runlog(path: str | os.PathLike[str]) -> bool:
    """True when the file's first line is a trainguard run-log header. Reads that line only, and never opens a
    pipe or device (that would consume it)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as f:
            return _is_header_line(f.readline(MAX_LINE_BYTES))
    except OSError:
        return False


def read_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checked header of a run-log file, reading its first line only; :class:`RunLogError` when the file
    is no readable run log (or is a pipe or device, which reading the header would consume)."""
    if not is_runlog(path):
        raise RunLogError(f"{path}: not a trainguard run log")
    with open(path, "rb") as f:
        header = _loads(f.readline(MAX_LINE_BYTES))
    _check_header(header, Path(path), 1)
    return header


def read_runlog(path: str | os.PathLike[str]) -> RunLog:
    """Reads a run log, line by line. A bad line is skipped and listed in ``problems``; a file that is no run log
    at all raises :class:`RunLogError` (one line). A pipe or device is read once, up to a size cap."""
    path = Path(path)
    try:
        with local_copy(path) as local:
            with open(local, "rb") as f:
                return _read(f, path)
    except InputError as e:
        raise RunLogError(str(e)) from None
    except FileNotFoundError:
        raise RunLogError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise RunLogError(f"{path}: is a directory, not a run log") from None
    except OSError as e:
        raise RunLogError(f"{path}: cannot read ({e.strerror or e})") from None


def _lines(f: IO[bytes]) -> Iterable[tuple[int, bytes | None, bool]]:
    """(line number, the line or None when longer than MAX_LINE_BYTES, whether it ended without a newline)."""
    number = 0
    while True:
        raw = f.readline(MAX_LINE_BYTES)
        if not raw:
            return
        number += 1
        if len(raw) >= MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # skip the rest of the line, a bounded chunk at a time
                raw = f.readline(MAX_LINE_BYTES)
            yield number, None, not raw
            continue
        yield number, raw, not raw.endswith(b"\n")


def _read(f: IO[bytes], path: Path) -> RunLog:
    lines = iter(_lines(f))
    first = next(lines, None)
    if first is None or not first[1] or not first[1].strip():
        raise RunLogError(f"{path}: empty file, not a trainguard run log")
    try:
        header = _loads(first[1])
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("schema") != SCHEMA:
        try:
            first[1].decode("utf-8")
        except UnicodeDecodeError:
            raise RunLogError(f"{path}: not UTF-8 text, so not a trainguard run log") from None
        raise RunLogError(f"{path}: first line is not a trainguard run-log header")
    log = RunLog(path=path, header=header, problems=_check_header(header, path, 1))
    for number, line, last in lines:
        if line is None:
            log.problems.append(f"line {number}: longer than {MAX_LINE_BYTES >> 20} MiB; skipped")
            continue
        if not line.strip():
            continue
        try:
            record = _loads(line)
            kind = record.pop("type")
            if kind == "step":
                log.steps.append(StepStats.from_dict(record))
            elif kind == "finding":
                log.findings.append(_checked_finding(Finding.from_dict(record)))
            elif kind == "action":
                log.actions.append(_checked_action(Action.from_dict(record)))
            elif kind == "event":
                log.events.append(record)
            elif kind == "validation":
                log.validations.append(Validation.from_dict(record))
            elif kind == "end":
                log.end = _checked_end(record)
            elif kind == "diagnosis":
                log.diagnosis = _checked_causes(record["causes"])
            elif kind == "header":
                # A later run appended to the same file: the newest run is the one read.
                log = RunLog(path=path, header=record, problems=log.problems + [
                    f"line {number}: file holds more than one run; reading the last",
                    *_check_header(record, path, number)])
            # Any other type is a later minor addition (as "diagnosis" was): skipped, so older readers keep
            # reading newer logs.
        except RunLogError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            tail = " (truncated last line)" if last else ""
            log.problems.append(f"line {number}: unreadable record{tail}: {type(e).__name__}")
    return log


def _check_header(header: dict[str, Any], path: Path, number: int) -> list[str]:
    """Refuses a header whose version is unreadable or newer than ours; fields of the wrong type are replaced by
    their empty value, with a problem each, so the reports can rely on their types."""
    version = header.get("version", SCHEMA_VERSION)
    if isinstance(version, bool) or not isinstance(version, int):
        raise RunLogError(f"{path}: line {number}: run-log version {str(version)[:40]!r} is not a whole number")
    if version > SCHEMA_VERSION:
        raise RunLogError(f"{path}: run-log version {version} is newer than this trainguard reads "
                          f"({SCHEMA_VERSION}); upgrade trainguard")
    problems = []
    for key, empty, valid in (("config", {}, lambda v: isinstance(v, dict)),
                              ("parameters", [], lambda v: isinstance(v, list) and all(isinstance(p, str) for p in v)),
                              ("framework", "", lambda v: isinstance(v, str)),
                              ("created", "", lambda v: isinstance(v, str))):
        if key in header and not valid(header[key]):
            problems.append(f"line {number}: header field {key!r} has the wrong type; ignored")
            header[key] = empty
    return problems


def _checked_finding(finding: Finding) -> Finding:
    if finding.where is not None and not isinstance(finding.where, str):
        raise TypeError("finding 'where' is not a name")
    return finding


def _checked_action(action: Action) -> Action:
    if action.reason is not None and not isinstance(action.reason, str):
        raise TypeError("action 'reason' is not a code")
    return action


def _checked_end(record: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(record.get("status", ""), str):
        raise TypeError("end 'status' is not a string")
    steps = record.get("steps", 0)
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TypeError("end 'steps' is not a whole number")
    return record


def _checked_causes(causes: Any) -> list[dict[str, Any]]:
    if not isinstance(causes, list):
        raise TypeError("causes is not a list")
    for cause in causes:
        if not isinstance(cause, dict) or not isinstance(cause.get("code"), str):
            raise TypeError("a cause has no code")
        confidence = cause.get("confidence", 0.0)
        if isinstance(confidence, bool) or not isinstance(confidence, (int, float)):
            raise TypeError("a cause's confidence is not a number")
        fix = cause.get("fix", {})
        if not isinstance(cause.get("message", ""), str) or not isinstance(fix, dict) or \
                not isinstance(fix.get("summary", ""), str):
            raise TypeError("a cause's message or fix is not text")
    return causes
