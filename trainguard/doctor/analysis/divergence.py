"""``divergence``: the loss climbs back from its best level and stays up (or ends in NaN/Inf).

Rule: on the coarse trend (about 20 block medians of at least 4 points; the first point counts when the loss rose
from there) the run's final level (the median of its last tenth, at least 3 points) is at least 1.5x its best level
and 3 point-to-point noise deviations above it (on a log scale; on a linear scale, the best level again in absolute
terms) and has given back at least a quarter of the progress from the first level to the best. Comparing levels
rather than points keeps spikes and minibatch noise out; requiring the loss to stay up keeps warm restarts (SGDR)
out, since they come back down. So does the learning down of a change of data: a loss whose coarse peak after the
best lies at least two final tails before the end, and that falls from there at a healthy rate (the median of the
second half of the stretch since the peak at most 0.9x the first half's, the live ``loss_spike``'s "coming down"),
is a run learning new data (a harder curriculum stage, Bengio et al. 2009; a new task, Goodfellow et al. 2013),
even when its final level stays above the easier data's best; a divergence keeps climbing or stays up (the dev
corpus' finite-loss divergences peak in their last fifth). The onset is the last point near the best level before the climb. The evidence carries the clues the diagnosis engine weighs
(``trainguard.core.diagnosis``): an LR that rose into the climb, a long calm phase with shrinking gradient norms
before an abrupt blow-up (the "Adam goes haywire after 200k batches" pattern), a gradient-norm run-up.

Severity: an error, the run is broken; information when the loss takes negative values. Such a loss is not a fit
bounded by 0 but a surrogate whose level follows other quantities (REINFORCE's -return x log-probability grows with
the returns as the policy improves, Williams 1992; a critic's estimate), so its climb is not harm by itself, as the
diagnosis engine's ``course.climb`` reads positive losses only. A blow-up of such a loss to NaN/Inf is still
``non_finite``'s error.
"""
from __future__ import annotations

import numpy as np

from trainguard.core.findings import Severity
from trainguard.doctor.analysis.causes import calm_shrinking_phase, evidence_round, grad_run_up, lr_change
from trainguard.doctor.analysis.signals import Signals, block_trend
from trainguard.doctor.findings import DoctorFinding, json_step

__all__ = ["analyse_divergence"]

_MIN_POINTS = 10
_MIN_BLOCK = 4
_RISE = np.log(1.5)
_GIVEN_BACK = 0.25
_COMING_DOWN = 0.9


def analyse_divergence(sig: Signals) -> list[DoctorFinding]:
    if sig.n < _MIN_POINTS:
        return []
    # Blocks of at least 4 points (as the engine's ``course.climb``) and a final level of at least 3: on a short,
    # noisy log (a log subsampled every 100 steps) the lowest median of 3 points is the noise's, not a level.
    level = block_trend(sig.y, max(_MIN_BLOCK, sig.n // 20))
    tail = max(3, sig.n // 10)
    start = float(np.median(sig.y[: max(2, sig.n // 20)]))
    best_i = int(np.argmin(level[:-tail])) if sig.n - tail > 0 else 0
    best = float(level[best_i])
    if sig.y[0] < best:
        # The loss rose from its very first point (a coarse log's first row, the mean of the first
        # logging_steps losses, may be the lowest the run ever was: an LR that diverges from the start).
        best_i, best = 0, float(sig.y[0])
    final = float(np.median(sig.y[-tail:]))
    rise = final - best
    if sig.log_scale:
        # ... and out of the point-to-point noise (scaled MAD of the log-loss's differences over sqrt 2): the
        # block medians of a short, noisy epoch-level log wander by more than 1.5x.
        noise = 1.4826 * float(np.median(np.abs(np.diff(sig.y)))) / np.sqrt(2)
        climbed = rise >= max(_RISE, 3 * noise)
    else:
        climbed = rise >= max(abs(best), 1e-12) and rise >= 5 * float(np.median(sig.scale))
    progress = start - best
    if not climbed or (progress > 0 and rise < _GIVEN_BACK * progress) or _learned_down(sig, level, best_i, tail):
        return []
    # Onset: last point at the best level + 10% of the climb, before the climb stays up.
    # (on the finer trend, so the onset is not a coarse block early)
    near_best = np.flatnonzero(sig.trend[best_i:] <= best + 0.1 * rise)
    onset = best_i + int(near_best[-1]) if len(near_best) else best_i
    onset = min(onset, sig.n - 1)
    evidence: dict = {
        "start_loss": evidence_round(_unscale(sig, start)), "best_loss": evidence_round(_unscale(sig, best)),
        "best_step": json_step(sig.steps[best_i]), "final_loss": evidence_round(_unscale(sig, final)),
        "onset_step": json_step(sig.steps[onset]),
        "climb_steps": json_step(sig.steps[-1] - sig.steps[onset]),
    }
    if sig.log_scale:
        evidence["final_over_best"] = evidence_round(float(np.exp(rise)))
    climb_points = max(5, sig.n - onset)
    lr = lr_change(sig, onset + climb_points // 2, climb_points // 2 + max(5, sig.n // 10))
    calm = calm_shrinking_phase(sig, onset)
    run_up = grad_run_up(sig, min(sig.n - 1, onset + max(2, climb_points // 4)), max(5, climb_points // 4))
    for clue in (lr, calm, run_up):
        if clue:
            evidence.update(clue)
    # Abrupt: half of the climb done within a tenth of the run.
    half_up = onset + int(np.argmax(level[onset:] >= best + 0.5 * rise))
    abrupt = (sig.steps[half_up] - sig.steps[onset]) <= 0.1 * max(1.0, sig.steps[-1] - sig.steps[0])
    evidence["abrupt"] = bool(abrupt)
    if sig.n < len(sig.series.loss):
        evidence["ends_non_finite"] = bool(not np.isfinite(sig.series.loss[-1]))
    message = (f"loss diverges from step {evidence['onset_step']}: best {evidence['best_loss']:g} at step "
               f"{evidence['best_step']}, {evidence['final_loss']:g} at the end")
    severity = Severity.ERROR
    if not sig.log_scale and float(sig.y.min()) < 0:  # (on a log scale sig.y is the log-loss)
        severity = Severity.INFO
        evidence["note"] = "the loss takes negative values: a surrogate whose level is not the fit"
    return [DoctorFinding("divergence", severity, float(sig.steps[onset]), "none", evidence, message)]


def _learned_down(sig: Signals, level: np.ndarray, best_i: int, tail: int) -> bool:
    """The loss has been falling from its coarse peak after the best for at least two final tails, its second half
    since the peak at most 0.9x the first (on a linear scale, 10% of the first half's size lower)."""
    peak_i = best_i + int(np.argmax(level[best_i:]))
    if sig.n - peak_i < 2 * tail:
        return False
    stretch = sig.y[peak_i:]
    half = len(stretch) // 2
    first, second = float(np.median(stretch[:half])), float(np.median(stretch[half:]))
    if sig.log_scale:
        return second - first <= np.log(_COMING_DOWN)
    return second <= first - (1.0 - _COMING_DOWN) * max(abs(first), 1e-12)


def _unscale(sig: Signals, v: float) -> float:
    return float(np.exp(v)) if sig.log_scale else v
