"""``loss_spike``: isolated spikes, the loss jumping far above its trend and coming back.

Rule: a robust z-score of the log-loss against a block-median trend of at least 6 and a jump to at least 1.5x
the trend (the OLMo / ZClip family of spike rules use a rolling robust z; the ratio floor keeps very smooth runs
from flagging tiny bumps), risen into from the points before it and come back from (``Signals.spikes``). Spikes
that belong to a periodic pattern are left to ``periodic_spike``. The evidence carries the clues the diagnosis
engine weighs: the batch size at the spike, a gradient-norm run-up before it, an LR that rose.

Severity by harm, the live detector's ladder (docs/severity.md): one spike the loss recovers from is information,
however high (a bad batch, or a switch to new data that fits in one row of a coarse log). A warning needs a high
spike (>= 5x its trend at z >= 8, and 3x the residual of the run's own tail) after which the loss stays up (the
level after it >= 1.3x the level before, and not coming down), or spikes that repeat: at least 3 high ones that
each undo half the progress from the start (median of the first 3 losses) to the level they left.
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
_REPEATED = 3  # large spikes, as the live detector's "repeated" rule
_UNDONE = 0.5  # of the progress from the start: a large spike
_SHIFT = 1.3  # the level after the spike over the level before it: the loss did not come back


def analyse_loss_spike(sig: Signals) -> list[DoctorFinding]:
    period = find_period(sig)
    periodic = set(period.peaks.tolist()) if period else set()
    spikes = [e for e in sig.spikes(strong=True) if not (periodic & set(range(e.start, e.end + 1)))]
    if not spikes:
        return []
    tail = _tail(sig)
    big = {e.peak: _big(sig, e, tail) for e in spikes}
    sides = {e.peak: _sides(sig, e) for e in spikes}
    start = float(np.median(sig.series.loss[sig.finite_idx[:3]]))
    # Large: >= 5x its trend at z >= 8 (not measured against the run's own tail, which repeated spikes make) and
    # undoing half the progress; minibatch noise near a converged level does not climb back to the start.
    large = [e for e in spikes if _high(sig, e) and _undoes_progress(sig, e, sides[e.peak][0], start)]
    repeated = {e.peak for e in large} if len(large) >= _REPEATED else set()
    biggest = sorted(spikes, key=lambda e: e.height, reverse=True)[:_MAX_REPORTED]
    found = []
    for episode in sorted(biggest, key=lambda e: e.peak):
        i = episode.peak
        trend = float(np.exp(sig.trend[i])) if sig.log_scale else float(sig.trend[i])
        loss = float(sig.series.loss[sig.finite_idx[i]])
        before, after = sides[i]
        shifted = _shifted(sig, episode, before, after)
        evidence: dict = {"loss": evidence_round(loss), "trend": evidence_round(trend),
                          "z": evidence_round(float(sig.z[i])), "length_steps": int(episode.end - episode.start + 1),
                          "spikes_in_run": len(spikes), "large_spikes_in_run": len(large),
                          "level_before": evidence_round(_unlog(sig, before)),
                          "level_after": evidence_round(_unlog(sig, after)), "level_shift": shifted}
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
        # Harm (docs/severity.md): large spikes that repeat, or a level the loss does not come back from. One
        # spike the loss recovers from is information, however high.
        severity = Severity.WARNING if i in repeated or (big[i] and shifted) else Severity.INFO
        step = float(sig.steps[i])
        message = (f"loss spike at step {json_step(step)}: {evidence_round(loss)} against a trend of "
                   f"{evidence_round(trend)}" + (f" ({evidence['ratio']:g}x)" if sig.log_scale else "")
                   + (f", one of {len(large)} large spikes" if repeated else "")
                   + (", and the loss stayed up after it" if shifted else ""))
        found.append(DoctorFinding("loss_spike", severity, step, "none", evidence, message))
    return found


def _high(sig: Signals, episode) -> bool:
    """>= 5x the trend (on a log scale) at z >= 8."""
    return bool(sig.z[episode.peak] >= _WARNING_Z
                and (np.exp(episode.height) >= _WARNING_RATIO if sig.log_scale else True))


def _big(sig: Signals, episode, tail: float) -> bool:
    """High, and 3x the residual of the run's own tail."""
    return _high(sig, episode) and episode.height >= _TAIL_FACTOR * tail


def _sides(sig: Signals, episode) -> tuple[float, float]:
    """The loss's level (median, in ``sig.y``'s units) over up to a block of points before and after the spike."""
    before = sig.y[max(0, episode.start - sig.block):episode.start]
    after = sig.y[episode.end + 1:episode.end + 1 + sig.block]
    return float(np.median(before)), float(np.median(after))


def _undoes_progress(sig: Signals, episode, before: float, start: float) -> bool:
    """The spike gives back at least half of the progress from the start (median of the first 3 losses) to the
    level it left, as the live detector's "large" spike does."""
    level = _unlog(sig, before)
    peak = float(sig.series.loss[sig.finite_idx[episode.peak]])
    return start > level and peak - level >= _UNDONE * (start - level)


def _shifted(sig: Signals, episode, before: float, after: float) -> bool:
    """The level after the spike stays >= 1.3x the level before it (on a linear scale, 30% of its size above) and
    is not coming down (the second half of the points after it no lower than 0.9x the first half): a switch to
    new data that is being learned down is no level shift, as in the live detector."""
    stretch = sig.y[episode.end + 1:episode.end + 1 + sig.block]
    half = len(stretch) // 2
    if sig.log_scale:
        up = after - before >= np.log(_SHIFT)
        coming_down = half >= 1 and float(np.median(stretch[half:]) - np.median(stretch[:half])) <= np.log(0.9)
    else:
        up = after - before >= (_SHIFT - 1) * max(abs(before), 1e-12)
        coming_down = half >= 1 and float(np.median(stretch[half:])) <= float(np.median(stretch[:half])) - \
            0.1 * max(abs(float(np.median(stretch[:half]))), 1e-12)
    return bool(up and not coming_down)


def _unlog(sig: Signals, v: float) -> float:
    return float(np.exp(v)) if sig.log_scale else v


def _tail(sig: Signals) -> float:
    """The residual that only the top few points (3, or 1 in 10,000 in long runs) exceed."""
    q = 1.0 - max(3.0 / sig.n, 1e-4)
    return max(float(np.quantile(sig.residual, q)), 0.0)
