"""``dead_relu`` and ``saturated_activation``, from the ``activation_health`` findings.

SageMaker Debugger's ``DeadRelu`` and ``SaturatedActivation`` rules flag a layer with more than 50% dead or
saturated units. Alone they are a warning (0.5); with a stalled loss they explain it (0.7).
"""
from __future__ import annotations

from trainguard.core.diagnosis.cause import Cause
from trainguard.core.diagnosis.rules._make import make_cause
from trainguard.core.diagnosis.run_view import RunView
from trainguard.core.findings import Severity

__all__ = ["dead_relu", "saturated_activation"]


def _from_findings(view: RunView, code: str, value_key: str, what: str) -> Cause | None:
    found = view.of(code, Severity.WARNING)
    if not found:
        return None
    layers = {f.where: f.evidence.get(value_key) for f in found}
    stalled = view.stalled
    evidence = {"layers": layers, "steps": [f.step for f in found][:8], "stalled": stalled}
    worst = max(layers, key=lambda name: layers[name] or 0.0)
    message = f"{layers[worst]:.0%} of the units of {worst} are {what}" + (", and the loss stalled" if stalled else "")
    return make_cause(view, code, 0.7 if stalled else 0.5, evidence, message)


def dead_relu(view: RunView) -> Cause | None:
    return _from_findings(view, "dead_relu", "dead_fraction", "dead (never positive)")


def saturated_activation(view: RunView) -> Cause | None:
    return _from_findings(view, "saturated_activation", "saturated_fraction", "saturated")
