"""A fixed-size rolling window as an immutable value, and the robust statistics detectors compute over it.

Robust z-score: (x - median) / (1.4826 * MAD), the MAD scaled to match a normal's standard deviation
(Rousseeuw & Croux 1993). It is what OLMo's spike rule and ZClip-style detectors use in place of mean/std,
so one outlier does not hide the next.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Window", "window", "push", "values", "robust_z", "median_mad"]

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
