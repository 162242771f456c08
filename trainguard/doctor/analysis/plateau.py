"""``plateau``: the loss does not come down from where it started.

Rule: with at least 10 points (ten epochs of an epoch-level log), the final level (median of the last 10%) is
within 5% of the first level and the trend never went more than 10% below it: a run stuck from the start, not a run that converged (a converged run
plateaus after a drop, which is healthy). SageMaker Debugger's ``LossNotDecreasing`` rule compares losses
between intervals the same way. Causes: tiny gradient norms (vanishing_gradient); healthy gradient norms with a
small LR, or a very small LR (lr_too_low); with neither column the doctor cannot tell them apart and says so.
"""
from __future__ import annotations

import numpy as np

from trainguard.core.findings import Severity
from trainguard.doctor.analysis.causes import evidence_round
from trainguard.doctor.analysis.signals import Signals
from trainguard.doctor.findings import DoctorFinding

__all__ = ["analyse_plateau"]

_MIN_POINTS = 10
_FLAT = 0.05
_NEVER_BELOW = 0.10


def analyse_plateau(sig: Signals) -> list[DoctorFinding]:
    if sig.n < _MIN_POINTS:
        return []
    head = sig.y[: max(3, sig.n // 10)]
    tail = sig.y[-max(3, sig.n // 10):]
    first, last = float(np.median(head)), float(np.median(tail))
    if sig.log_scale:
        change, deepest = last - first, float(sig.level.min()) - first
        flat, never_below = abs(change) <= np.log1p(_FLAT), deepest >= np.log1p(-_NEVER_BELOW)
        first_loss, last_loss = float(np.exp(first)), float(np.exp(last))
    else:
        ref = max(abs(first), 1e-12)
        flat = abs(last - first) <= _FLAT * ref
        never_below = float(sig.level.min()) >= first - _NEVER_BELOW * ref
        first_loss, last_loss = first, last
    # "Far above zero": a loss already near 0 (or below) that stays there is converged, not stuck.
    if not (flat and never_below) or last_loss <= 1e-3:
        return []
    evidence: dict = {"first_loss": evidence_round(first_loss), "last_loss": evidence_round(last_loss),
                      "steps": int(sig.steps[-1] - sig.steps[0]), "points": int(sig.n)}
    grad = sig.column_at("grad_norm", 0, sig.n)
    lr = sig.column_at("lr", 0, sig.n)
    if len(grad):
        evidence["median_grad_norm"] = evidence_round(float(np.median(grad)))
    if len(lr):
        evidence["median_lr"] = evidence_round(float(np.median(lr)))
    message = f"loss stays at {evidence['last_loss']:g} from the start ({evidence['points']} points, no progress)"
    return [DoctorFinding("plateau", Severity.WARNING, float(sig.steps[0]), "none", evidence, message)]
