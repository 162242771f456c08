"""The built-in detectors, one per module, and the default set the guard runs."""
from __future__ import annotations

from trainguard.core.detector import Detector, chain
from trainguard.core.detectors.accumulation_spill import accumulation_spill
from trainguard.core.detectors.activation_health import activation_health
from trainguard.core.detectors.adam_update import adam_update
from trainguard.core.detectors.batch_size_loss import batch_size_loss
from trainguard.core.detectors.data_scale import data_scale
from trainguard.core.detectors.divergence import divergence
from trainguard.core.detectors.exploding_gradient import exploding_gradient
from trainguard.core.detectors.first_update import first_update
from trainguard.core.detectors.grad_scaler import grad_scaler
from trainguard.core.detectors.loss_spike import loss_spike
from trainguard.core.detectors.module_mode import module_mode
from trainguard.core.detectors.non_finite import non_finite
from trainguard.core.detectors.output_range import output_range
from trainguard.core.detectors.plateau import plateau
from trainguard.core.detectors.vanishing_gradient import vanishing_gradient

__all__ = ["non_finite", "exploding_gradient", "vanishing_gradient", "loss_spike", "divergence", "plateau",
           "data_scale", "module_mode", "adam_update", "activation_health", "batch_size_loss", "first_update",
           "grad_scaler", "accumulation_spill", "output_range", "default_detectors"]


def default_detectors() -> Detector:
    """Every built-in detector with its cited default thresholds: the pathologies first (a mixed-precision run's
    loss scale among them), then the signals the diagnosis reads (data scale, module modes, Adam's update size,
    activation health, loss against batch size, Adam's first update against the weights, a bounded output against
    the targets)."""
    return chain(non_finite(), exploding_gradient(), vanishing_gradient(), loss_spike(), divergence(), plateau(),
                 grad_scaler(), data_scale(), module_mode(), adam_update(), activation_health(), batch_size_loss(),
                 accumulation_spill(), first_update(), output_range())
