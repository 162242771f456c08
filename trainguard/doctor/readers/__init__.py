"""Finding log files and reading each into a :class:`~trainguard.doctor.series.RunSeries`.

A directory is searched recursively (hidden folders skipped) for the file kinds below. Of a Hugging Face
output directory's ``checkpoint-N/trainer_state.json`` files only the newest is read (each older one is a prefix
of it), and none when the directory has its own final ``trainer_state.json``.
"""
from __future__ import annotations

import re
from pathlib import Path

from trainguard.doctor.columns import build_series
from trainguard.doctor.readers.csv_reader import read_csv_table
from trainguard.doctor.readers.json_reader import read_json_table, read_jsonl_table
from trainguard.doctor.readers.runlog_reader import read_runlog_table
from trainguard.doctor.readers.tensorboard_reader import read_tensorboard_table
from trainguard.doctor.series import ReadError, RunSeries
from trainguard.io.files import InputError, local_copy
from trainguard.io.runlog import is_runlog

__all__ = ["find_logs", "detect_format", "read_run", "ReadError"]

_CHECKPOINT = re.compile(r"checkpoint-(\d+)$")


def detect_format(path: Path, name: str | None = None) -> str | None:
    """The format by file name (``name``, default the path's), and for JSONL by the first line at ``path``."""
    name = (name or path.name).lower()
    if "tfevents" in name:
        return "tensorboard"
    if name.endswith((".csv", ".tsv")):
        return "csv"
    if name.endswith((".jsonl", ".ndjson")):
        return "runlog" if is_runlog(path) else "jsonl"
    if name.endswith(".json"):
        return "trainer_state"
    return None


def find_logs(paths: list[str | Path]) -> list[Path]:
    """The log files named or found under ``paths``, in a stable order. A named file is kept whatever its
    name (its format is then guessed from its content); a missing path raises :class:`ReadError`."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(_newest_checkpoints(sorted(
                p for p in path.rglob("*")
                if p.is_file() and not _hidden(path, p) and _wanted_in_directory(p))))
        elif path.exists():
            found.append(path)
        else:
            raise ReadError(f"{path}: no such file or directory")
    return list(dict.fromkeys(found))


def _wanted_in_directory(path: Path) -> bool:
    fmt = detect_format(path)
    # Directories hold many .json files (configs, tokenizers); only the trainer state is a log.
    return fmt is not None and (fmt != "trainer_state" or path.name == "trainer_state.json")


def _hidden(root: Path, path: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts[:-1])


def _newest_checkpoints(files: list[Path]) -> list[Path]:
    newest: dict[Path, tuple[int, Path]] = {}
    out = []
    for f in files:
        match = _CHECKPOINT.match(f.parent.name) if f.name == "trainer_state.json" else None
        if match is None:
            out.append(f)
            continue
        key, number = f.parent.parent, int(match.group(1))
        if key not in newest or number > newest[key][0]:
            newest[key] = (number, f)
    # A final trainer_state.json beside the checkpoints (Trainer.save_state) holds the whole run.
    final = {f.parent for f in out if f.name == "trainer_state.json"}
    return out + [f for parent, (_, f) in newest.items() if parent not in final]


def read_run(path: Path, overrides: dict[str, str | None] | None = None) -> RunSeries:
    """Reads one log file; raises :class:`ReadError` (one line) when nothing usable is in it. A pipe or device
    (``<(cat log.csv)``, a FIFO) is read once into a temporary file, up to a size cap."""
    try:
        with local_copy(path) as local:
            try:
                return _read_local(local, path, overrides)
            except ReadError as e:
                # The readers name the file they opened; the user named the stream.
                raise ReadError(str(e).replace(str(local), str(path))) from None
    except InputError as e:
        raise ReadError(str(e)) from None


def _read_local(local: Path, path: Path, overrides: dict[str, str | None] | None) -> RunSeries:
    fmt = detect_format(local, path.name) or _sniff(local)
    if fmt == "runlog":
        table, log = read_runlog_table(local)
        series = build_series(table, path, fmt, overrides)
        series.logged_findings, series.logged_actions = list(log.findings), list(log.actions)
        return series
    reader = {"csv": read_csv_table, "jsonl": read_jsonl_table, "trainer_state": read_json_table,
              "tensorboard": read_tensorboard_table}[fmt]
    table = reader(local)
    return build_series(table, path, fmt, overrides)


def _sniff(path: Path) -> str:
    """The format of a file whose name says nothing, from its first bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as e:
        raise ReadError(f"{path}: cannot read ({e.strerror or e})") from None
    stripped = head.lstrip()
    if stripped.startswith(b"{"):
        return "runlog" if is_runlog(path) else ("jsonl" if b"\n{" in head or b"log_history" not in head
                                                 else "trainer_state")
    if stripped.startswith(b"["):
        return "trainer_state"
    if b"," in head or b"\t" in head:
        return "csv"
    if not stripped:
        raise ReadError(f"{path}: empty file")
    raise ReadError(f"{path}: unknown log format (expected CSV, JSONL, trainer_state.json, a TensorBoard "
                    f"event file or a trainguard run log)")
