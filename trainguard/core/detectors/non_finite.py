"""``non_finite``: NaN or Inf in the loss, the gradients or the weights.

Rule: any non-finite value is an error (Keras ``TerminateOnNaN``, optax ``apply_if_finite``). The finding names
the first parameter, in forward order, whose gradient is non-finite, and the first module whose output was
non-finite when the adapter's forward hooks found one. One finding per episode: it re-arms after a finite step.
"""
from __future__ import annotations

from typing import NamedTuple

from trainguard.core.detector import Detector
from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import StepStats

__all__ = ["non_finite", "NonFiniteState"]


class NonFiniteState(NamedTuple):
    in_episode: bool
    total: int  # non-finite steps seen so far


def non_finite() -> Detector:
    def init() -> NonFiniteState:
        return NonFiniteState(in_episode=False, total=0)

    def update(stats: StepStats, state: NonFiniteState):
        if stats.finite:
            return (), NonFiniteState(False, state.total) if state.in_episode else state
        new_state = NonFiniteState(True, state.total + 1)
        if state.in_episode:
            return (), new_state
        what = [name for name, ok in (("loss", stats.loss_finite), ("gradients", stats.grads_finite),
                                       ("weights", stats.weights_finite)) if not ok]
        where = stats.first_nonfinite_module or stats.first_nonfinite_grad
        evidence = {"non_finite": what, "loss": stats.loss}
        if stats.first_nonfinite_grad:
            evidence["first_nonfinite_grad"] = stats.first_nonfinite_grad
        if stats.first_nonfinite_module:
            evidence["first_nonfinite_module"] = stats.first_nonfinite_module
        message = f"non-finite {' and '.join(what)} at step {stats.step}"
        if where:
            message += f", first in {where}"
        return (Finding("non_finite", Severity.ERROR, stats.step, where, evidence, message),), new_state

    return Detector("non_finite", init, update)
