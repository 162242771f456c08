"""``overfitting``: the validation loss rises while the training loss keeps falling.

Needs a validation loss in ``StepStats.extra["val_loss"]`` (recorded at evaluation steps). Rule after SageMaker
Debugger's ``Overfit`` rule (``ratio_threshold`` 0.1): the last validation loss is more than 10% above its best,
while the training loss at the end is below its value at the validation best.
"""
from __future__ import annotations

import math

import numpy as np

from trainguard.core.diagnosis.cause import Cause
from trainguard.core.diagnosis.rules._make import make_cause
from trainguard.core.diagnosis.run_view import RunView
from trainguard.core.findings import Severity

__all__ = ["overfitting"]

RATIO_THRESHOLD = 0.1
MIN_EVALUATIONS = 3


def overfitting(view: RunView) -> Cause | None:
    points = [(s.step, s.extra["val_loss"]) for s in view.stats
              if s.extra.get("val_loss") is not None and math.isfinite(s.extra["val_loss"])]
    if len(points) < MIN_EVALUATIONS:
        return _from_finding(view)
    val = np.array([v for _, v in points])
    best = int(np.argmin(val))
    best_step, best_val, last_val = points[best][0], float(val[best]), float(val[-1])
    if best == len(val) - 1 or best_val <= 0 or (last_val - best_val) / best_val <= RATIO_THRESHOLD:
        return None
    steps, losses = view.steps, view.losses
    finite = np.isfinite(losses)
    train_at_best = losses[finite & (steps <= best_step)]
    train_end = losses[finite & (steps > best_step)]
    if len(train_at_best) == 0 or len(train_end) == 0:
        return None
    train_then, train_now = float(np.median(train_at_best[-5:])), float(np.median(train_end[-5:]))
    if train_now >= train_then:
        return None
    rise = (last_val - best_val) / best_val
    evidence = {"best_val_loss": best_val, "best_step": best_step, "last_val_loss": last_val,
                "train_loss_at_best": train_then, "train_loss_now": train_now, "val_rise": rise,
                "separated_by": "the validation loss rose while the training loss fell"}
    message = (f"validation loss rose {rise:.0%} above its best (step {best_step}) while the training loss fell "
               f"from {train_then:.3g} to {train_now:.3g}")
    return make_cause(view, "overfitting", 0.5 + 0.3 * min(1.0, rise), evidence, message)


def _from_finding(view: RunView) -> Cause | None:
    """An ``overfitting`` finding of the doctor (evaluation rows it read from a log) when the statistics carry
    no validation loss."""
    found = view.of("overfitting", Severity.WARNING)
    if not found:
        return None
    evidence = {**found[0].evidence, "separated_by": "the validation loss rose while the training loss fell"}
    rise = float(evidence.get("eval_rise", 0.0) or 0.0)
    return make_cause(view, "overfitting", 0.5 + 0.3 * min(1.0, rise), evidence, found[0].message)
