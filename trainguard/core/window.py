"""A fixed-size rolling window as an immutable value, and the robust statistics detectors compute over it.

Robust z-score: (x - median) / (1.4826 * MAD), the MAD scaled to match a normal's standard deviation
(Rousseeuw & Croux 1993). It is what OLMo's spike rule and ZClip-style detectors use in place of mean/std,
so one outlier does not hide the next.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Window", "window", "push", "values", "robust_z", "median_mad", "RobustTrack", "robust_track", "track_size",
           "track_push", "track_z", "track_exact", "track_values"]

MAD_TO_SIGMA = 1.4826


class Window(NamedTuple):
    buffer: np.ndarray  # capacity slots, filled round-robin
    count: int  # values pushed so far (may exceed capacity)


def window(capacity: int) -> Window:
    if capacity < 1:
        raise ValueError("window capacity must be >= 1")
    return Window(np.zeros(capacity, dtype=np.float64), 0)


def push(w: Window, x: float) -> Window:
    """A new window with ``x`` appended (the oldest value drops out when full)."""
    buf = w.buffer.copy()
    buf[w.count % len(buf)] = x
    return Window(buf, w.count + 1)


def values(w: Window) -> np.ndarray:
    """The window's values, oldest first."""
    n = len(w.buffer)
    if w.count <= n:
        return w.buffer[: w.count]
    start = w.count % n
    return np.concatenate([w.buffer[start:], w.buffer[:start]])


def median_mad(xs: np.ndarray) -> tuple[float, float]:
    med = float(np.median(xs))
    return med, float(np.median(np.abs(xs - med)))


def robust_z(x: float, xs: np.ndarray, rel_floor: float = 1e-3) -> float:
    """Robust z-score of ``x`` against ``xs``.

    The scale is floored at ``rel_floor * |median|`` so a perfectly flat history (MAD 0) does not turn the
    smallest wiggle into an infinite z.
    """
    med, mad = median_mad(xs)
    scale = max(MAD_TO_SIGMA * mad, rel_floor * abs(med), 1e-12)
    return (x - med) / scale


class RobustTrack(NamedTuple):
    """A rolling window with its median and robust scale cached, for detectors that test every step.

    Merging a value and recomputing the median and MAD of 128 values costs ~7 µs, so new values wait in
    ``pending`` and are merged, and the median and scale refreshed, only every few pushes: every push while the
    window holds < 16 values, then every ``size // 8`` pushes (16 for a full window of 128: ~1 µs a push).
    ``track_z`` is the cheap z-score against that (possibly stale) median; a detector confirms a candidate with
    ``track_exact``.
    """

    buffer: np.ndarray  # merged values, round-robin; never written after the track is made
    count: int  # values merged so far (may exceed the capacity)
    pending: tuple[float, ...]  # values pushed since the last merge
    median: float  # NaN until the first merge
    scale: float  # max(1.4826 * MAD, rel_floor * |median|, 1e-12), as in ``robust_z``
    merge_at: int  # how many pending values trigger the next merge


def robust_track(capacity: int) -> RobustTrack:
    if capacity < 1:
        raise ValueError("window capacity must be >= 1")
    return RobustTrack(np.zeros(capacity, dtype=np.float64), 0, (), float("nan"), float("nan"), 1)


def track_size(t: RobustTrack) -> int:
    """How many values the window holds."""
    return min(t.count + len(t.pending), len(t.buffer))


def track_push(t: RobustTrack, x: float, rel_floor: float = 1e-3) -> RobustTrack:
    """A new track with ``x`` appended; merged and refreshed when due."""
    pending = t.pending + (x,)
    if len(pending) < t.merge_at:
        return RobustTrack(t.buffer, t.count, pending, t.median, t.scale, t.merge_at)
    buffer, count = _merge(t.buffer, t.count, pending)
    median, scale = _median_scale(buffer[:count], rel_floor)
    return RobustTrack(buffer, count, (), median, scale, max(1, min(count, len(buffer)) // 8))


def track_z(t: RobustTrack, x: float) -> float:
    """Robust z-score of ``x`` against the cached median and scale (NaN before the first merge)."""
    return (x - t.median) / t.scale


def track_exact(t: RobustTrack, rel_floor: float = 1e-3) -> tuple[float, float]:
    """The window's median and scale computed now, pending values included (what ``robust_z`` would use)."""
    if not t.pending:
        return t.median, t.scale
    buffer, count = _merge(t.buffer, t.count, t.pending)
    return _median_scale(buffer[:count], rel_floor)


def track_values(t: RobustTrack) -> np.ndarray:
    """The window's values, pending ones included, in no particular order."""
    buffer, count = _merge(t.buffer, t.count, t.pending) if t.pending else (t.buffer, t.count)
    return buffer[:min(count, len(buffer))]


def _merge(buffer: np.ndarray, count: int, pending: tuple[float, ...]) -> tuple[np.ndarray, int]:
    merged = buffer.copy()
    capacity = len(merged)
    for x in pending:
        merged[count % capacity] = x
        count += 1
    return merged, count


def _median_scale(xs: np.ndarray, rel_floor: float) -> tuple[float, float]:
    # Order does not matter for a median, so the ring buffer is used as it lies; np.partition is O(n).
    med = _partition_median(xs)
    mad = _partition_median(np.abs(xs - med))
    return med, max(MAD_TO_SIGMA * mad, rel_floor * abs(med), 1e-12)


def _partition_median(xs: np.ndarray) -> float:
    n = len(xs)
    k = n // 2
    if n % 2:
        return float(np.partition(xs, k)[k])
    p = np.partition(xs, (k - 1, k))
    return 0.5 * float(p[k - 1] + p[k])
