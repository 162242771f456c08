"""``large_lr``: a Hugging Face Trainer log whose learning rate is as large as a transformer's weights.

Rule: a ``trainer_state.json`` (the Trainer's default optimizer is AdamW: ``TrainingArguments.optim``
``"adamw_torch"``) whose logged learning rate reaches ``LARGE_LR`` (0.05). Adam moves every weight by about the
learning rate per step whatever the gradient's scale (Kingma & Ba 2015, sec. 2.1: the effective step is bounded by
the step size), and the Trainer's models start with weights of standard deviation 0.02 (``initializer_range`` of
GPT-2's and BERT's configurations): at 0.05 each step moves a weight by 2.5x its initial size, the log's analogue of
the live ``first_update`` detector (Adam's first update as large as the weights). The healthy corpus' Trainer runs
use at most 0.01 (a tiny GPT-2 that trains well there), 5x below. Other logs say nothing of the optimizer (SGD at
0.1 is ordinary), so they get no finding.

Severity by harm: a warning when the loss made little progress at that rate (its final level above half its first
row: nanoGPT#468's "crazy high learning rate" flattens far above the fixed run), or made its progress only once
the schedule had brought the LR down (``course.progress_as_lr_decays``: the LR >= 2x lower in the second half,
where the log-loss fell >= 1.5x more than in the first; Smith 2017's LR range test: past the largest usable LR the
loss stops improving, so it improves as the LR comes back under it; the healthy corpus' decaying schedules fall
<= 0.92x as much in their second half); information when it fell far while the LR was high. The diagnosis engine
reads the finding as ``lr_too_high``'s evidence.
"""
from __future__ import annotations

import numpy as np

from trainguard.core.diagnosis.course import progress_as_lr_decays
from trainguard.core.findings import Severity
from trainguard.doctor.analysis.causes import evidence_round
from trainguard.doctor.analysis.signals import Signals
from trainguard.doctor.findings import DoctorFinding

__all__ = ["analyse_large_lr", "LARGE_LR"]

LARGE_LR = 0.05
_LITTLE_PROGRESS = 0.5


def analyse_large_lr(sig: Signals) -> list[DoctorFinding]:
    if sig.series.format != "trainer_state" or sig.n < 3:
        return []
    lr = sig.column_at("lr", 0, sig.n)
    if not len(lr) or float(lr.max()) < LARGE_LR:
        return []
    losses = sig.series.loss[sig.finite_idx]
    first, last = float(losses[0]), float(np.median(losses[-max(3, sig.n // 10):]))
    little = not (last < _LITTLE_PROGRESS * first)
    decayed = progress_as_lr_decays(sig.series.loss, sig.series.lr)
    at = int(np.argmax(sig.series.lr >= LARGE_LR))
    evidence = {"peak_lr": evidence_round(float(lr.max())), "assumed_optimizer": "AdamW (the Trainer's default)",
                "first_loss": evidence_round(first), "last_loss": evidence_round(last), "little_progress": little,
                "progress_as_lr_decays": decayed}
    message = (f"learning rate {evidence['peak_lr']:g} under the Trainer's default AdamW: every step moves each weight "
               f"by about that much, more than a transformer's initial weights (std 0.02)")
    if little:
        message += f"; the loss went only from {evidence['first_loss']:g} to {evidence['last_loss']:g}"
    elif decayed is not None:
        message += (f"; the loss improved only as the schedule lowered it ({decayed['lr_fall']:g}x lower in the "
                    f"second half)")
    return [DoctorFinding("large_lr", Severity.WARNING if little or decayed is not None else Severity.INFO,
                          float(sig.series.step[at]), "none", evidence, message)]
