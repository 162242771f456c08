"""Reading and checking the two run logs: everything that makes a pair impossible to compare is refused here
with one line, so the comparison itself can assume two readable runs of the same model."""
from __future__ import annotations

import os
import re

from trainguard.diff.names import component_map
from trainguard.io.runlog import RunLog, RunLogError, read_header, read_runlog

__all__ = ["DiffInputError", "check_layers_recorded", "load_run", "check_pair", "parameter_names", "module_of"]

_FORENSIC_HINT = "record both runs with the guard's forensic preset (preset='forensic')"


class DiffInputError(ValueError):
    """Two run logs that cannot be compared; the message is one line, fit for the user (exit code 2)."""


def check_layers_recorded(source: str | os.PathLike[str] | RunLog, label: str) -> None:
    """Refuses a run-log file without any per-layer record before it is parsed: a million-step log costs
    seconds and a gigabyte to read, only to be refused by :func:`check_pair`."""
    if isinstance(source, RunLog):
        return
    try:
        read_header(source)
    except (RunLogError, OSError):
        return  # load_run says what is wrong with it
    if _mentions(source) == {b'"step"'}:
        raise DiffInputError(f"run {label}: {source}: no per-layer statistics; {_FORENSIC_HINT}")


def load_run(source: str | os.PathLike[str] | RunLog, label: str) -> RunLog:
    """A readable run log with step records, or :class:`DiffInputError`."""
    if isinstance(source, RunLog):
        log = source
    else:
        try:
            log = read_runlog(source)
        except RunLogError as e:
            raise DiffInputError(f"run {label}: {e}") from None
    # A damaged line could hide the very step where the runs part; refuse rather than compare around it.
    damaged = [p for p in log.problems if "unreadable record" in p]
    if damaged:
        more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
        raise DiffInputError(f"run {label}: {log.path}: damaged or truncated run log, {damaged[0]}{more}")
    if not log.steps:
        raise DiffInputError(f"run {label}: {log.path}: no step records (truncated log, or the run never stepped)")
    return log


def _mentions(path: str | os.PathLike[str], keys: tuple[bytes, ...] = (b'"step"', b'"layers"')) -> set[bytes]:
    """Which of ``keys`` occur in the records after the header line: a byte scan, far cheaper than parsing."""
    found: set[bytes] = set()
    overlap = max(map(len, keys)) - 1
    with open(path, "rb") as f:
        f.readline()
        tail = b""
        while len(found) < len(keys) and (chunk := f.read(1 << 20)):
            window = tail + chunk
            found.update(key for key in keys if key in window)
            tail = window[-overlap:]
    return found


def parameter_names(log: RunLog) -> tuple[str, ...]:
    """Parameter names in forward order: the header's list, else the first per-layer record's names."""
    names = tuple(log.header.get("parameters") or ())
    if names:
        return names
    for stats in log.steps:
        if stats.layers:
            return tuple(layer.name for layer in stats.layers)
    return ()


def check_pair(a: RunLog, b: RunLog) -> tuple[tuple[str, ...], dict[str, str]]:
    """A's parameter list and the map from B's name components to A's (empty when the names are equal), after
    checking that both runs trained the same model and carry per-layer statistics on a common step."""
    names_a, names_b = parameter_names(a), parameter_names(b)
    if not names_a or not names_b:
        label, log = ("A", a) if not names_a else ("B", b)
        raise DiffInputError(f"run {label}: {log.path}: no per-layer statistics; {_FORENSIC_HINT}")
    mapping = component_map(names_a, names_b)
    if mapping is None:
        raise DiffInputError(f"the runs trained different models: {_first_mismatch(names_a, names_b)}")
    steps_a = {s.step for s in a.steps}
    common = steps_a & {s.step for s in b.steps}
    if not common:
        raise DiffInputError(f"the runs share no step: A has steps {_span(steps_a)}, "
                             f"B has steps {_span({s.step for s in b.steps})}")
    layered_a = {s.step for s in a.steps if s.layers}
    layered_b = {s.step for s in b.steps if s.layers}
    if not layered_a or not layered_b:
        label, log = ("A", a) if not layered_a else ("B", b)
        raise DiffInputError(f"run {label}: {log.path}: no per-layer statistics; {_FORENSIC_HINT}")
    if not layered_a & layered_b & common:
        raise DiffInputError(f"the runs carry per-layer statistics on no common step "
                             f"(A: {_span(layered_a)}, B: {_span(layered_b)}); {_FORENSIC_HINT}")
    return names_a, mapping


def module_of(name: str) -> str:
    """``"bn1.running_mean"`` -> ``"bn1"``; Keras paths ``"dense/kernel"`` -> ``"dense"``."""
    parts = re.split(r"[./]", name)
    return name[: len(name) - len(parts[-1]) - 1] if len(parts) > 1 else name


def _first_mismatch(a: tuple[str, ...], b: tuple[str, ...]) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"parameter {i} is {x!r} in A but {y!r} in B ({len(a)} and {len(b)} parameters)"
    return f"A has {len(a)} parameters, B has {len(b)}"


def _span(steps: set[int]) -> str:
    return f"{min(steps)}-{max(steps)}" if steps else "none"
