"""The diagnosis rules, one function per cause code: ``rule(view) -> Cause | None``.

Each module's docstring gives its evidence, thresholds and sources; docs/causes.md is the user-facing catalogue.
"""
from __future__ import annotations

from trainguard.core.diagnosis.rules.activations import dead_relu, saturated_activation
from trainguard.core.diagnosis.rules.adam import adam_epsilon
from trainguard.core.diagnosis.rules.batches import bad_batch, batch_size_dependent_loss
from trainguard.core.diagnosis.rules.data import unscaled_data
from trainguard.core.diagnosis.rules.generalization import overfitting
from trainguard.core.diagnosis.rules.gradients import exploding_gradient, vanishing_gradient
from trainguard.core.diagnosis.rules.learning_rate import lr_too_high, lr_too_low
from trainguard.core.diagnosis.rules.modes import bn_inference_mode

__all__ = ["RULES"]

# code -> rule; every code of trainguard.core.causes.CAUSES but "none" (the empty diagnosis) has one.
RULES = {
    "unscaled_data": unscaled_data,
    "lr_too_high": lr_too_high,
    "lr_too_low": lr_too_low,
    "vanishing_gradient": vanishing_gradient,
    "exploding_gradient": exploding_gradient,
    "batch_size_dependent_loss": batch_size_dependent_loss,
    "adam_epsilon": adam_epsilon,
    "bad_batch": bad_batch,
    "bn_inference_mode": bn_inference_mode,
    "dead_relu": dead_relu,
    "saturated_activation": saturated_activation,
    "overfitting": overfitting,
}
