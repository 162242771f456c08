"""The built-in detectors, one per module, and the default set the guard runs."""
from __future__ import annotations

from trainguard.core.detector import Detector, chain
from trainguard.core.detectors.divergence import divergence
from trainguard.core.detectors.exploding_gradient import exploding_gradient
from trainguard.core.detectors.loss_spike import loss_spike
from trainguard.core.detectors.non_finite import non_finite
from trainguard.core.detectors.plateau import plateau
from trainguard.core.detectors.vanishing_gradient import vanishing_gradient

__all__ = ["non_finite", "exploding_gradient", "vanishing_gradient", "loss_spike", "divergence", "plateau",
           "default_detectors"]


def default_detectors() -> Detector:
    """Every built-in detector with its cited default thresholds."""
    return chain(non_finite(), exploding_gradient(), vanishing_gradient(), loss_spike(), divergence(), plateau())
