"""``loss_scale``: the first loss is orders of magnitude above what a trivial predictor of standardized targets
would score.

Rule (``trainguard.core.diagnosis.course.first_loss_scale``): the median of the first 3 losses is >= 1e3. A
trivial predictor of standardized targets scores ~1 (mean squared error of predicting 0) and uniform
cross-entropy over K classes ln K (<= 14 for a million classes), so such a first loss means targets, or outputs
driven by the inputs, far from unit scale (LeCun et al. 1998, "Efficient BackProp", sec. 4.3). WARNING while
the loss stays within 1e3x of that first value and above every trivial predictor's scale (the scale still weighs on
training); INFO when the run brought it down by more, or to 14 or below, where a trivial predictor's loss can be
(the model learned the scale: a run whose first loss is 1.7e3 and whose last is 1.9 is not being harmed).
"""
from __future__ import annotations

import numpy as np

from trainguard.core.diagnosis.course import first_loss_scale
from trainguard.core.findings import Severity
from trainguard.doctor.analysis.causes import evidence_round
from trainguard.doctor.analysis.signals import Signals
from trainguard.doctor.findings import DoctorFinding

__all__ = ["analyse_loss_scale"]

_LEARNED = 1e3
_TRIVIAL_SCALE = 14.0  # ln 1e6: uniform cross-entropy over a million classes, the largest trivial loss


def analyse_loss_scale(sig: Signals) -> list[DoctorFinding]:
    scale = first_loss_scale(sig.series.loss)
    if scale is None:
        return []
    values = sig.series.loss[sig.finite_idx]
    last = float(np.median(values[-max(3, len(values) // 10):]))
    learned = last * _LEARNED <= scale["first_loss"] or last <= _TRIVIAL_SCALE
    severity = Severity.INFO if learned else Severity.WARNING
    evidence = {"first_loss": evidence_round(scale["first_loss"]), "last_loss": evidence_round(last),
                "orders_above_trivial": scale["orders_above"]}
    message = (f"the first loss, {scale['first_loss']:.3g}, is {scale['orders_above']:.2g} orders of magnitude above "
               f"a trivial predictor's on standardized targets: the data is far from unit scale")
    return [DoctorFinding("loss_scale", severity, float(sig.steps[0]), "none", evidence, message)]
