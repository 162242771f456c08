"""The built-in detectors, one per module, and the default set the guard runs."""
from __future__ import annotations

from trainguard.core.detector import Detector, chain
from trainguard.core.detectors.non_finite import non_finite

__all__ = ["non_finite", "default_detectors"]


def default_detectors() -> Detector:
    """Every built-in detector with its cited default thresholds."""
    return chain(non_finite())
