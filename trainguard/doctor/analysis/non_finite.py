"""``non_finite``: NaN or Inf in the logged loss (an error), or in the logged gradient norm alone.

Rule as in Keras ``TerminateOnNaN``. A non-finite gradient norm with a finite loss is what fp16 loss scaling logs
when it skips an overflowing step (torch ``GradScaler``, Hugging Face Trainer), so it is information unless it
is frequent: more than 5% of the rows after the loss scale's calibration. Dynamic loss scaling starts at a large
scale (2^16) and halves it on each overflow, so a burst of skips at the start is how it finds its scale ("it's
normal to see a few of these messages at the start of training as the loss scaler calibrates", NVIDIA apex's amp
documentation): the leading rows with a non-finite gradient norm and a finite loss, within the first 32 steps
(16 halvings bring 2^16 to 1, twice over), are left out of the share. The evidence carries what came before the
first NaN, for the diagnosis engine: a gradient-norm run-up, an LR that rose, a long calm phase with shrinking
gradient norms, whether the run recovered.
"""
from __future__ import annotations

import numpy as np

from trainguard.core.findings import Severity
from trainguard.doctor.analysis.causes import calm_shrinking_phase, grad_run_up, lr_change
from trainguard.doctor.analysis.signals import Signals
from trainguard.doctor.findings import DoctorFinding

__all__ = ["analyse_non_finite"]

_FREQUENT_OVERFLOW = 0.05
_CALIBRATION_STEPS = 32


def analyse_non_finite(sig: Signals) -> list[DoctorFinding]:
    series = sig.series
    bad = ~np.isfinite(series.loss)
    found = []
    if bad.any():
        first = int(np.argmax(bad))
        recovered = bool(np.isfinite(series.loss[first:]).any())
        # Index among finite points of the last finite loss before the NaN.
        onset = int(np.searchsorted(sig.finite_idx, first))
        evidence = {"first_step": _step(series.step[first]), "non_finite_steps": int(bad.sum()),
                    "recovered": recovered}
        if onset > 0:
            evidence["last_finite_loss"] = float(f"{float(series.loss[sig.finite_idx[onset - 1]]):.4g}")
        run_up = grad_run_up(sig, onset) if onset > 0 else None
        lr = lr_change(sig, onset, max(5, onset // 5)) if onset > 0 else None
        calm = calm_shrinking_phase(sig, onset) if onset > 0 else None
        for clue in (run_up, lr, calm):
            if clue:
                evidence.update(clue)
        message = (f"loss is non-finite at step {evidence['first_step']} ({evidence['non_finite_steps']} step(s)"
                   f"{', recovered after' if recovered else ', never recovered'})")
        found.append(DoctorFinding("non_finite", Severity.ERROR, float(series.step[first]), "none", evidence,
                                   message))
    grad = series.optional("grad_norm")
    if grad is not None:
        grad_bad = series.present["grad_norm"] & ~np.isfinite(grad) & np.isfinite(series.loss)
        if grad_bad.any():
            first = int(np.argmax(grad_bad))
            calibration = _calibration_rows(grad_bad, series.step)
            share = float(grad_bad[calibration:].mean()) if calibration < len(grad_bad) else 0.0
            severity = Severity.WARNING if share > _FREQUENT_OVERFLOW else Severity.INFO
            evidence = {"first_step": _step(series.step[first]), "non_finite_grad_norm_steps": int(grad_bad.sum()),
                        "calibration_steps": calibration, "share": float(f"{share:.3g}")}
            message = (f"gradient norm is non-finite on {int(grad_bad.sum())} step(s) with a finite loss "
                       f"(fp16 loss scaling skips such steps; frequent ones mean overflowing gradients)")
            found.append(DoctorFinding("non_finite", severity, float(series.step[first]), "none",
                                       evidence, message))
    return found


def _step(step: float) -> int | float:
    return int(step) if float(step).is_integer() else float(step)


def _calibration_rows(grad_bad: np.ndarray, steps: np.ndarray) -> int:
    """How many leading rows are the loss scale's calibration: the first rows whose gradient norm is non-finite
    (a finite loss), when they end within ``_CALIBRATION_STEPS`` steps of the run's first."""
    leading = int(np.argmin(grad_bad)) if not grad_bad.all() else len(grad_bad)
    if leading == 0 or leading == len(grad_bad) or steps[leading - 1] - steps[0] > _CALIBRATION_STEPS:
        return 0
    return leading
