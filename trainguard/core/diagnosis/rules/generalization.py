"""``overfitting``: the held-out loss climbs away from its best while the training loss keeps falling, and the
held-out metrics (when recorded) degrade with it.

One definition, the ``overfitting`` detector's (trainguard.core.detectors.overfitting: Prechelt 1998's
generalization loss over a sustained span, severity by harm): the live session runs it on each validation
result, the doctor on a log's evaluation rows. This rule names the cause when that detector's finding is a
warning; an information-level one (the loss rose but the metrics held) harms nothing and names no cause.
Confidence 0.5 + 0.3 x the loss's rise above its best (capped at 100%).
"""
from __future__ import annotations

from trainguard.core.diagnosis.cause import Cause
from trainguard.core.diagnosis.rules._make import make_cause
from trainguard.core.diagnosis.run_view import RunView
from trainguard.core.findings import Severity

__all__ = ["overfitting"]


def overfitting(view: RunView) -> Cause | None:
    found = view.of("overfitting", Severity.WARNING)
    if not found:
        return None
    finding = found[-1]
    evidence = {**finding.evidence,
                "separated_by": "the held-out loss rose over several evaluations while the training loss fell"}
    rise = evidence.get("val_rise")
    rise = float(rise) if isinstance(rise, (int, float)) else 0.0
    return make_cause(view, "overfitting", 0.5 + 0.3 * min(1.0, max(0.0, rise)), evidence, finding.message)
