"""The smoothed loss the trend detectors (``divergence``, ``plateau``) share."""
from __future__ import annotations

__all__ = ["robust_ema"]


def robust_ema(ema: float, weight: float, x: float, alpha: float) -> tuple[float, float]:
    """One step of a bias-corrected EMA (Adam's moments: ``ema / weight`` is the average), fed with ``x`` capped at
    twice the current average, so that a lone spike barely moves it (a Huber-style EMA) while a real rise still
    doubles it in about one half-life. Start from ``(0.0, 0.0)``."""
    if weight > 0:
        cap = 2.0 * abs(ema / weight)
        if x > cap:
            x = cap
    return ema + alpha * (x - ema), weight + alpha * (1.0 - weight)
