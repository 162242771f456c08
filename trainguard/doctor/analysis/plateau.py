"""``plateau``: the loss does not come down from where it started.

Rule: with at least 10 points (ten epochs of an epoch-level log), the final level (median of the last 10%) is
within 5% of the first level and the trend never went more than 10% below it: a run stuck from the start, not a
run that converged (a converged run plateaus after a drop, which is healthy). SageMaker Debugger's
``LossNotDecreasing`` rule compares losses between intervals the same way. Or the diagnosis engine's
``course.stall_from_start`` holds: stuck after a short first drop at a trivial predictor's level or at half the
first loss, or never 10% below the first row (a coarse log's first row is the mean of the first
``logging_steps`` losses). The evidence carries the gradient norm and LR when logged, and the stall's noise;
the diagnosis engine names the candidates (dead units, vanishing gradients, saturation, an LR too low or, under a
jumpy loss, too high).
"""
from __future__ import annotations

import numpy as np

from trainguard.core.findings import Severity
from trainguard.core.diagnosis.course import stall_from_start
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
    # A loss stuck after a short first drop, or one that never got below its first row, is stuck too: the
    # diagnosis engine's own measure, so the doctor's finding and the engine's causes see the same stall.
    stall = stall_from_start(sig.series.loss)
    # "Far above zero": a loss already near 0 (or below) that stays there is converged, not stuck.
    if not ((flat and never_below) or stall) or last_loss <= 1e-3:
        return []
    evidence: dict = {"first_loss": evidence_round(first_loss), "last_loss": evidence_round(last_loss),
                      "steps": int(sig.steps[-1] - sig.steps[0]), "points": int(sig.n)}
    if stall:
        evidence.update({k: v for k, v in stall.items() if k in ("never_improved", "noise", "quiet",
                                                                  "trivial_predictor", "trivial_loss")})
    grad = sig.column_at("grad_norm", 0, sig.n)
    lr = sig.column_at("lr", 0, sig.n)
    if len(grad):
        evidence["median_grad_norm"] = evidence_round(float(np.median(grad)))
    if len(lr):
        evidence["median_lr"] = evidence_round(float(np.median(lr)))
    message = f"loss stays at {evidence['last_loss']:g} from the start ({evidence['points']} points, no progress)"
    return [DoctorFinding("plateau", Severity.WARNING, float(sig.steps[0]), "none", evidence, message)]
