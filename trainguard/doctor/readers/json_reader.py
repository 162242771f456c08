"""JSON logs: JSONL of metric dicts (one object per line), and Hugging Face ``trainer_state.json``, whose
``log_history`` is a list of such dicts (training rows with ``loss``, evaluation rows with ``eval_loss``).

Nested dicts are flattened with ``/`` (``{"train": {"loss": 1}}`` -> ``train/loss``). Numbers, and strings that
read as numbers ("nan", "inf", "1e-3"), are values; anything else is a missing cell, counted in ``problems``.
"""
from __future__ import annotations

import json
import math
from array import array
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from trainguard.doctor.readers._text import read_text
from trainguard.doctor.series import MetricTable, ReadError

__all__ = ["read_jsonl_table", "read_json_table", "rows_to_table"]


def read_jsonl_table(path: Path) -> MetricTable:
    problems: list[str] = []
    lines = read_text(path, problems).splitlines()
    columns = _Columns()
    bad_lines: list[int] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply to be a line of metrics
            bad_lines.append(number)
            continue
        if isinstance(record, dict):
            columns.add(record)
        else:
            bad_lines.append(number)
    if bad_lines:
        last = bad_lines[-1] == len(lines) and len(bad_lines) == 1
        problems.append("truncated last line; skipped" if last else
                        f"{len(bad_lines)} line(s) are not JSON objects (first: line {bad_lines[0]}); skipped")
    if not columns.rows:
        raise ReadError(f"{path}: no line is a JSON object of metrics")
    table = columns.table()
    table.problems = problems + table.problems
    return table


def read_json_table(path: Path) -> MetricTable:
    """``trainer_state.json`` (or any JSON holding a list of metric dicts)."""
    problems: list[str] = []
    text = read_text(path, problems)
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ReadError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); truncated?") from None
    except RecursionError:
        raise ReadError(f"{path}: JSON nested too deeply to be a trainer state") from None
    rows = data.get("log_history") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise ReadError(f"{path}: no 'log_history' list (is it a Hugging Face trainer_state.json?)")
    records = [r for r in rows if isinstance(r, dict)]
    if len(records) < len(rows):
        problems.append(f"{len(rows) - len(records)} log entries are not metric dicts; skipped")
    if not records:
        raise ReadError(f"{path}: the log history is empty")
    table = rows_to_table(records)
    table.problems = problems + table.problems
    return table


def rows_to_table(rows: list[dict[str, Any]]) -> MetricTable:
    columns = _Columns()
    for row in rows:
        columns.add(row)
    return columns.table()


class _Columns:
    """Accumulates metric dicts column by column in compact arrays (16 bytes a cell, not a dict per row), so
    a million-line JSONL stays within memory."""

    def __init__(self) -> None:
        self.rows = 0
        self.cells: dict[str, tuple[array, array]] = {}
        self.bad: dict[str, int] = {}

    def add(self, row: dict[str, Any]) -> None:
        for key, raw in _flatten(row, ""):
            x = _number(raw)
            if x is None:
                self.bad[key] = self.bad.get(key, 0) + 1
                self.cells.setdefault(key, (array("q"), array("d")))
                continue
            where, values = self.cells.setdefault(key, (array("q"), array("d")))
            where.append(self.rows)
            values.append(x)
        self.rows += 1

    def table(self) -> MetricTable:
        values: dict[str, np.ndarray] = {}
        present: dict[str, np.ndarray] = {}
        for key, (where, cells) in self.cells.items():
            rows = np.frombuffer(where, dtype=np.int64) if len(where) else np.empty(0, dtype=np.int64)
            values[key] = np.full(self.rows, np.nan)
            present[key] = np.zeros(self.rows, dtype=bool)
            if len(rows):
                values[key][rows] = np.frombuffer(cells, dtype=np.float64)
                present[key][rows] = True
        problems = [f"field {key!r}: {count} value(s) are not numbers; read as missing"
                    for key, count in self.bad.items() if present[key].any()]
        return MetricTable(values, present, problems)


def _flatten(row: dict[str, Any], prefix: str) -> Iterable[tuple[str, Any]]:
    # With an explicit stack: a hostile line nested a thousand levels deep must not exhaust Python's recursion.
    # Keys come out in the order a recursive walk gives.
    stack = [(prefix, iter(row.items()))]
    while stack:
        prefix, items = stack[-1]
        for key, value in items:
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                stack.append((name + "/", iter(value.items())))
                break
            yield name, value
        else:
            stack.pop()


def _number(raw: Any) -> float | None:
    if isinstance(raw, bool) or raw is None:
        return None
    if isinstance(raw, (int, float)):
        try:
            return float(raw)
        except OverflowError:  # a huge JSON integer
            return math.inf if raw > 0 else -math.inf
    if isinstance(raw, str):
        try:
            return float(raw)
        except ValueError:
            return None
    return None
