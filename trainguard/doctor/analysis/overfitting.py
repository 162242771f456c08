"""``overfitting`` from a log's evaluation rows: the live guard's detector (trainguard.core.detectors.overfitting,
one definition: Prechelt 1998's generalization loss over a sustained span, WARNING only when the held-out metrics
degrade too, INFO when the loss rises but they hold) replayed over the evaluations, each with the training loss's
trend at its step and the evaluation metrics the log carries (``val_accuracy``, ``eval_f1``...).
"""
from __future__ import annotations

import numpy as np

from trainguard.core.detector import replay
from trainguard.core.detectors.overfitting import overfitting
from trainguard.core.validation import Validation
from trainguard.doctor.analysis.causes import evidence_round
from trainguard.doctor.analysis.signals import Signals
from trainguard.doctor.findings import DoctorFinding, json_step

__all__ = ["analyse_overfitting"]


def analyse_overfitting(sig: Signals) -> list[DoctorFinding]:
    series = sig.series
    if series.eval_loss is None or series.eval_step is None or sig.n < 2:
        return []
    metrics = series.eval_metrics
    records = [Validation(step=i, loss=float(loss), train_loss=_train_level(sig, float(step)),
                          metrics={name: float(values[i]) for name, values in metrics.items()})
               for i, (step, loss) in enumerate(zip(series.eval_step.tolist(), series.eval_loss.tolist()))]
    found, _ = replay(overfitting(), records)
    out = []
    for f in found:
        step = float(series.eval_step[f.step])  # the record's step is its row among the evaluations
        evidence = {k: (evidence_round(v) if isinstance(v, float) else v) for k, v in f.evidence.items()}
        evidence["best_step"] = json_step(float(series.eval_step[f.evidence["best_step"]]))
        message = f.message.replace(f"(step {f.evidence['best_step']})", f"(step {evidence['best_step']})")
        out.append(DoctorFinding("overfitting", f.severity, step, "none", evidence, message))
    return out


def _train_level(sig: Signals, step: float) -> float:
    i = int(np.clip(np.searchsorted(sig.steps, step), 0, sig.n - 1))
    return sig.loss_at(i)
