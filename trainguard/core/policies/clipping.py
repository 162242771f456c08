"""Gradient-clipping math on numpy arrays: small public helpers, each tested alone (optax ``_clipping``).

- Global-norm clipping (Pascanu et al. 2013): rescale all gradients together so their joint L2 norm is at most
  ``max_norm``; the direction is kept.
- Clipping by value: clamp each entry to ``[-v, v]`` (Keras ``clipvalue``).
- Unit-wise adaptive gradient clipping, AGC (Brock et al. 2021, "High-Performance Large-Scale Image Recognition
  Without Normalization"): each unit's (output row's) gradient is clipped to ``clipping * max(||W_unit||, eps)``.
- AutoClip (Seetharaman et al. 2020): the threshold is a percentile of the gradient-norm history.
- ZClip (Kumar et al. 2025): an EMA mean and variance of the gradient norm; a norm whose z-score exceeds
  ``z`` is an outlier and is clipped to ``mean + z * std``.

>>> import numpy as np
>>> clipped = clip_by_global_norm([np.array([3.0, 4.0])], 1.0)
>>> round(global_norm(clipped), 6)
1.0
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np

__all__ = [
    "global_norm", "clip_by_global_norm", "clip_by_value", "unitwise_norm", "unitwise_clip",
    "autoclip_threshold", "EmaStats", "ema_stats", "ema_push", "zclip_threshold",
]


def global_norm(arrays: Sequence[np.ndarray]) -> float:
    """The L2 norm of all entries of all arrays, as one vector."""
    return float(np.sqrt(sum(float(np.sum(np.square(a, dtype=np.float64))) for a in arrays)))


def clip_by_global_norm(arrays: Sequence[np.ndarray], max_norm: float) -> list[np.ndarray]:
    """Rescales the arrays together so their global norm is at most ``max_norm`` (optax
    ``clip_by_global_norm``; torch's ``clip_grad_norm_`` adds 1e-6 to the norm)."""
    norm = global_norm(arrays)
    if norm <= max_norm:
        return [a.copy() for a in arrays]
    return [a * (max_norm / norm) for a in arrays]


def clip_by_value(arrays: Sequence[np.ndarray], value: float) -> list[np.ndarray]:
    return [np.clip(a, -value, value) for a in arrays]


def unitwise_norm(x: np.ndarray) -> np.ndarray:
    """L2 norm of each unit, broadcastable to ``x``. For matrices and convolution kernels (``out, in, ...``)
    a unit is one output row or filter; in a vector (bias, gain) each entry is its own unit (as optax does)."""
    if x.ndim <= 1:
        return np.abs(x)
    axes = tuple(range(1, x.ndim))
    return np.sqrt(np.sum(np.square(x, dtype=np.float64), axis=axes, keepdims=True)).astype(x.dtype)


def unitwise_clip(grad: np.ndarray, param: np.ndarray, clipping: float = 0.01, eps: float = 1e-3) -> np.ndarray:
    """AGC: clip each unit's gradient to ``clipping * max(||W_unit||, eps)``.

    Afterwards ``unitwise_norm(result) <= clipping * max(unitwise_norm(param), eps)`` (up to rounding).
    """
    max_norm = clipping * np.maximum(unitwise_norm(param), eps)
    g_norm = unitwise_norm(grad)
    scale = np.where(g_norm > max_norm, max_norm / np.maximum(g_norm, 1e-6), 1.0)
    return (grad * scale).astype(grad.dtype)


def autoclip_threshold(history: np.ndarray, percentile: float = 10.0) -> float:
    """AutoClip's threshold: the ``percentile``-th percentile of the gradient norms seen so far."""
    if len(history) == 0:
        return float("inf")
    return float(np.percentile(history, percentile))


class EmaStats(NamedTuple):
    """Exponential moving mean and variance of the gradient norm (ZClip)."""

    mean: float
    var: float
    count: int  # norms pushed


def ema_stats() -> EmaStats:
    return EmaStats(0.0, 0.0, 0)


def ema_push(s: EmaStats, x: float, alpha: float = 0.97, warmup: int = 25) -> EmaStats:
    """Pushes one norm. During the first ``warmup`` norms the mean and variance are the plain running ones
    (ZClip initialises its EMA from the warm-up steps); afterwards ``mean <- a*mean + (1-a)*x`` and
    ``var <- a*var + (1-a)*(x-mean)^2``."""
    n = s.count + 1
    if n <= warmup:
        delta = x - s.mean
        mean = s.mean + delta / n
        m2 = s.var * s.count + delta * (x - mean)  # Welford, var kept as population variance
        return EmaStats(mean, m2 / n, n)
    mean = alpha * s.mean + (1 - alpha) * x
    var = alpha * s.var + (1 - alpha) * (x - mean) ** 2
    return EmaStats(mean, var, n)


def zclip_threshold(s: EmaStats, z: float = 2.5, warmup: int = 25) -> float:
    """The norm above which ZClip calls a step an outlier: ``mean + z * std``; infinite during warm-up."""
    if s.count < warmup:
        return float("inf")
    return s.mean + z * math.sqrt(max(s.var, 0.0))  # math.sqrt: as exact as numpy's, without its per-call cost
