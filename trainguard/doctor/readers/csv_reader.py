"""CSV logs: Keras ``CSVLogger`` (one row per epoch), Lightning ``CSVLogger`` ``metrics.csv`` (train and
validation rows interleaved, with empty cells), and any CSV with a step and a loss column.

A clean numeric file takes numpy's C parser (``np.loadtxt``: a million rows in well under a second); anything
else (empty cells, text, a truncated last line) falls back to a tolerant row-by-row read that says what it
skipped.
"""
from __future__ import annotations

import csv
import math
import warnings
from array import array
from pathlib import Path

import numpy as np

from trainguard.doctor.readers._text import read_text
from trainguard.doctor.series import MetricTable, ReadError

__all__ = ["read_csv_table"]


def read_csv_table(path: Path) -> MetricTable:
    fast = _fast(path)
    if fast is not None:
        return fast
    problems: list[str] = []
    # The whole text once, for its one-line errors (empty, binary, not UTF-8); the rows are then streamed.
    text = read_text(path, problems)
    header_end = text.find("\n")
    names, delimiter = _header((text if header_end < 0 else text[:header_end]), path)
    if header_end < 0 or not text[header_end + 1:].strip():
        raise ReadError(f"{path}: header only, no data rows")
    del text
    table = _tolerant(path, names, delimiter, problems)
    if table.rows == 0:
        raise ReadError(f"{path}: no readable data rows")
    table.problems = problems + table.problems
    return table


def _header(line: str, path: Path) -> tuple[list[str], str]:
    line = line.strip("\r")
    delimiter = _delimiter(line)
    try:
        names = [n.strip().strip('"').strip() for n in next(csv.reader([line], delimiter=delimiter))]
    except csv.Error:  # a lone carriage return inside the line (old Mac line ends), a NUL byte
        raise ReadError(f"{path}: no header line with column names") from None
    if not any(names) or all(_is_number(n) for n in names if n):
        raise ReadError(f"{path}: no header line with column names")
    return _unique(names), delimiter


def _delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for i, name in enumerate(names):
        name = name or f"column{i + 1}"
        if name in seen:
            seen[name] += 1
            name = f"{name}.{seen[name]}"
        else:
            seen[name] = 0
        out.append(name)
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _fast(path: Path) -> MetricTable | None:
    """A clean numeric file straight from disk through numpy's C parser (no copy of the text in memory);
    None for anything it cannot take, which the tolerant reader then handles and explains."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return None
    if not head.strip() or b"\x00" in head or b"\n" not in head:
        return None
    try:
        names, delimiter = _header(head.split(b"\n", 1)[0].decode("utf-8-sig"), path)
    except (UnicodeDecodeError, ReadError):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data": the tolerant reader says it better
            data = np.loadtxt(path, delimiter=delimiter, dtype=np.float64, ndmin=2, comments=None, skiprows=1,
                              encoding="utf-8-sig")
    except (ValueError, UnicodeDecodeError, OSError):
        return None
    if data.shape[0] == 0 or data.shape[1] != len(names):
        return None
    ones = np.ones(data.shape[0], dtype=bool)
    return MetricTable({n: data[:, i] for i, n in enumerate(names)}, {n: ones for n in names})


def _tolerant(path: Path, names: list[str], delimiter: str, problems: list[str]) -> MetricTable:
    """Row by row from disk into compact per-column arrays (9 bytes a cell), skipping and counting what does
    not fit: rows of the wrong width, lines the csv module rejects, cells that are not numbers."""
    width = len(names)
    columns = [array("d") for _ in names]
    present = [bytearray() for _ in names]
    bad = [0] * width
    bad_first: list[str | None] = [None] * width
    wrong, last_wrong_line, last_wrong_short = 0, -1, False
    # Spreadsheets in many locales write "0,25" in ";"-separated files.
    decimal_comma = delimiter != ","
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        f.readline()  # the header, already parsed
        reader = csv.reader(f, delimiter=delimiter)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error:  # a NUL byte, an unterminated quote
                wrong, last_wrong_line, last_wrong_short = wrong + 1, reader.line_num, False
                continue
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != width:
                wrong, last_wrong_line, last_wrong_short = wrong + 1, reader.line_num, len(row) < width
                continue
            for j, cell in enumerate(row):
                cell = cell.strip()
                if cell:
                    try:
                        columns[j].append(float(cell if not decimal_comma else cell.replace(",", ".")))
                        present[j].append(1)
                        continue
                    except ValueError:
                        bad[j] += 1
                        bad_first[j] = bad_first[j] or cell
                columns[j].append(math.nan)
                present[j].append(0)
        lines_read = reader.line_num
    if wrong:
        truncated = last_wrong_short and last_wrong_line == lines_read
        if truncated:
            problems.append(f"line {lines_read + 1}: truncated last line; skipped")
        if wrong - truncated:
            problems.append(f"{wrong - truncated} row(s) with a wrong number of fields; skipped")
    values: dict[str, np.ndarray] = {}
    has: dict[str, np.ndarray] = {}
    for j, name in enumerate(names):
        values[name] = np.frombuffer(columns[j], dtype=np.float64) if len(columns[j]) else np.empty(0)
        has[name] = np.frombuffer(bytes(present[j]), dtype=np.uint8).astype(bool)
        # A column of text (a timestamp, a run name) is no problem; numbers mixed with text are.
        if bad[j] and has[name].any():
            problems.append(f"column {name!r}: {bad[j]} cell(s) are not numbers (first {bad_first[j][:20]!r}); "
                            f"read as missing")
    return MetricTable(values, has)
