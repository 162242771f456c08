"""``overfitting``: the evaluation loss rises for several evaluations while the training loss keeps falling.

Rule (the validation-loss rule of early stopping, Prechelt 1998, "Early stopping - but when?"): at least 5
evaluations; after the best one, at least 3 more; the last evaluation at least 10% above the best (and the median of
the last three at least 3% above it); rising in most evaluations since the best; the training loss lower at the last
evaluation than at the best one. An evaluation loss that flattens or wobbles within 10% is healthy and not reported.
"""
from __future__ import annotations

import numpy as np

from trainguard.core.findings import Severity
from trainguard.doctor.analysis.causes import evidence_round
from trainguard.doctor.analysis.signals import Signals
from trainguard.doctor.findings import DoctorFinding, json_step

__all__ = ["analyse_overfitting"]

_MIN_EVALS = 5
_MIN_AFTER = 3
_RISE = 0.10


def analyse_overfitting(sig: Signals) -> list[DoctorFinding]:
    series = sig.series
    if series.eval_loss is None or sig.n < 2:
        return []
    ok = np.isfinite(series.eval_loss)
    steps, loss = series.eval_step[ok], series.eval_loss[ok]
    if len(loss) < _MIN_EVALS:
        return []
    best = int(np.argmin(loss))
    after = loss[best + 1:]
    if len(after) < _MIN_AFTER:
        return []
    best_loss, last, recent = float(loss[best]), float(loss[-1]), float(np.median(loss[-3:]))
    scale = abs(best_loss) if best_loss != 0 else 1.0
    rising_share = float(np.mean(np.diff(loss[best:]) > 0))
    if (last - best_loss) / scale < _RISE or (recent - best_loss) / scale < 0.3 * _RISE or rising_share < 0.6:
        return []
    train_at_best, train_at_end = _train_level(sig, steps[best]), _train_level(sig, steps[-1])
    if not train_at_end < train_at_best:
        return []
    evidence = {
        "best_eval_step": json_step(steps[best]), "best_eval_loss": evidence_round(best_loss),
        "last_eval_loss": evidence_round(float(loss[-1])), "eval_rise": evidence_round((last - best_loss) / scale),
        "train_loss_at_best": evidence_round(train_at_best), "train_loss_at_end": evidence_round(train_at_end),
        "evaluations_after_best": int(len(after)),
    }
    message = (f"evaluation loss rises from {evidence['best_eval_loss']:g} (step {evidence['best_eval_step']}) to "
               f"{evidence['last_eval_loss']:g} while the training loss falls")
    return [DoctorFinding("overfitting", Severity.WARNING, float(steps[best]), "none", evidence, message)]


def _train_level(sig: Signals, step: float) -> float:
    i = int(np.clip(np.searchsorted(sig.steps, step), 0, sig.n - 1))
    return sig.loss_at(i)
