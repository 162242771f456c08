"""``loss_spike``: isolated spikes, the loss jumping far above its trend and coming back.

Rule: a robust z-score of the log-loss against a block-median trend of at least 6 and a jump to at least 1.5x
the trend (the OLMo / ZClip family of spike rules use a rolling robust z; the ratio floor keeps very smooth runs
from flagging tiny bumps). Spikes that belong to a periodic pattern are left to ``periodic_spike``. The evidence
carries the clues the diagnosis engine weighs: the batch size at the spike, a gradient-norm run-up before it,
an LR that rose.
"""
from __future__ import annotations

import numpy as np

from trainguard.core.findings import Severity
from trainguard.doctor.analysis.causes import batch_size_drop, evidence_round, grad_run_up, lr_change
from trainguard.doctor.analysis.periodic_spike import find_period
from trainguard.doctor.analysis.signals import Signals
from trainguard.doctor.findings import DoctorFinding, json_step

__all__ = ["analyse_loss_spike"]

_MAX_REPORTED = 5
_WARNING_RATIO = 5.0
_WARNING_Z = 8.0
# A warning spike must also stand out from the run's own tail: three times the residual that only a handful
# of points exceed. Heavy-tailed minibatch noise (small batches, long sequences) then stays information: for a
# Student-t(4) noise the largest point passes 3x that quantile in about 4% of runs, a bad batch in any run.
_TAIL_FACTOR = 3.0


def analyse_loss_spike(sig: Signals) -> list[DoctorFinding]:
    period = find_period(sig)
    periodic = set(period.peaks.tolist()) if period else set()
    spikes = [e for e in sig.spikes(strong=True) if not (periodic & set(range(e.start, e.end + 1)))]
    if not spikes:
        return []
    biggest = sorted(spikes, key=lambda e: e.height, reverse=True)[:_MAX_REPORTED]
    tail = _tail(sig)
    found = []
    for episode in sorted(biggest, key=lambda e: e.peak):
        i = episode.peak
        trend = float(np.exp(sig.trend[i])) if sig.log_scale else float(sig.trend[i])
        loss = float(sig.series.loss[sig.finite_idx[i]])
        evidence: dict = {"loss": evidence_round(loss), "trend": evidence_round(trend),
                          "z": evidence_round(float(sig.z[i])), "length_steps": int(episode.end - episode.start + 1),
                          "spikes_in_run": len(spikes)}
        if sig.log_scale:
            evidence["ratio"] = evidence_round(float(np.exp(episode.height)))
        batch = batch_size_drop(sig, np.array([i]))
        run_up = grad_run_up(sig, i)
        lr = lr_change(sig, i, 50)
        for clue in (batch, run_up):
            if clue:
                evidence.update(clue)
        if lr:
            evidence.update(lr)
        if run_up is None:
            evidence["grad_norm_run_up"] = "not logged"
        big = sig.z[i] >= _WARNING_Z and episode.height >= _TAIL_FACTOR * tail
        if sig.log_scale:
            big = big and np.exp(episode.height) >= _WARNING_RATIO
        severity = Severity.WARNING if big else Severity.INFO
        step = float(sig.steps[i])
        message = (f"loss spike at step {json_step(step)}: {evidence_round(loss)} against a trend of "
                   f"{evidence_round(trend)}" + (f" ({evidence['ratio']:g}x)" if sig.log_scale else ""))
        found.append(DoctorFinding("loss_spike", severity, step, "none", evidence, message))
    return found


def _tail(sig: Signals) -> float:
    """The residual that only the top few points (3, or 1 in 10,000 in long runs) exceed."""
    q = 1.0 - max(3.0 / sig.n, 1e-4)
    return max(float(np.quantile(sig.residual, q)), 0.0)
