"""TensorBoard event files, read with the tensorboard package's own loader (the optional ``tensorboard``
extra). Each scalar tag becomes a column; rows are the union of the tags' steps, and a tag that was not
written at a step is a missing cell. A step written twice keeps its last value. A file cut short mid-record
(the loader stops there without a word) is read up to the cut, and the cut is listed in ``problems``."""
from __future__ import annotations

import mmap
import struct
from pathlib import Path

import numpy as np

from trainguard.doctor.series import MetricTable, ReadError

__all__ = ["read_tensorboard_table"]


def read_tensorboard_table(path: Path) -> MetricTable:
    try:
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
        from tensorboard.util import tensor_util
    except ImportError:
        raise ReadError(f"{path}: reading TensorBoard files needs the tensorboard package: "
                        f"pip install 'trainguard[tensorboard]'") from None
    if not path.is_file():
        raise ReadError(f"{path}: no such file")
    scalars: dict[str, dict[int, float]] = {}
    problems: list[str] = []
    try:
        for event in EventFileLoader(str(path)).Load():
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                x = _scalar(value, tensor_util)
                if x is not None:
                    scalars.setdefault(value.tag, {})[int(event.step)] = x
    except Exception as e:  # the loader raises protobuf and OS errors on damaged files
        if not scalars:
            raise ReadError(f"{path}: not a readable TensorBoard event file ({type(e).__name__})") from None
        problems.append(f"event file damaged after {sum(map(len, scalars.values()))} scalars "
                        f"({type(e).__name__}); read what came before")
    if not scalars:
        raise ReadError(f"{path}: no scalar summaries in this TensorBoard event file "
                        f"(damaged, or only images/histograms)")
    torn = _torn_tail(path)
    if torn and not problems:  # the loader stops quietly at a torn record: say the file is cut short
        problems.append(f"event file truncated: its last {torn} byte(s) are an incomplete record (a run killed "
                        f"mid-write, or a partial copy); read the {sum(map(len, scalars.values()))} scalars "
                        f"before it")
    steps = np.unique(np.fromiter((s for tag in scalars.values() for s in tag), dtype=np.int64))
    values: dict[str, np.ndarray] = {"step": steps.astype(np.float64)}
    present: dict[str, np.ndarray] = {"step": np.ones(len(steps), dtype=bool)}
    for tag, by_step in scalars.items():
        tag_steps = np.fromiter(by_step.keys(), dtype=np.int64, count=len(by_step))
        rows = np.searchsorted(steps, tag_steps)
        column = np.full(len(steps), np.nan)
        column[rows] = np.fromiter(by_step.values(), dtype=np.float64, count=len(by_step))
        has = np.zeros(len(steps), dtype=bool)
        has[rows] = True
        name = tag if tag != "step" else "tag:step"
        values[name], present[name] = column, has
    return MetricTable(values, present, problems)


def _torn_tail(path: Path) -> int:
    """Bytes after the last complete record. An event file is TFRecord-framed: each record is a little-endian
    uint64 length, a 4-byte CRC of it, the data, and a 4-byte CRC of the data."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        position = 0
        while position + 12 <= size:
            (length,) = struct.unpack_from("<Q", data, position)
            end = position + 12 + length + 4
            if end > size:
                break
            position = end
    return size - position


def _scalar(value, tensor_util) -> float | None:
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        return float(value.simple_value)
    if kind == "tensor":
        try:
            array = tensor_util.make_ndarray(value.tensor)
        except Exception:  # a non-numeric tensor (text, images) is not a metric
            return None
        if array.size == 1 and np.issubdtype(array.dtype, np.number):
            return float(array.reshape(()))
    return None
