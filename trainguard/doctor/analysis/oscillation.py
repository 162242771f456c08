"""``oscillation``: the loss swings up and down around its trend with a dominant short period.

Rule: in windows of 256 points the detrended log-loss has one frequency (period 2..64 points) holding at least
30% of the residual power, swings both ways by at least 3% (10th/90th percentiles, which one-sided spikes do not
reach). Minibatch noise is white, so no single frequency holds much
of its power (about ln(128)/128 for a 256-point window). The finding needs the pattern in at least two windows.
A step size past the stability edge of the loss surface makes gradient descent overshoot back and forth
(Cohen et al. 2021, "Gradient descent on neural networks typically occurs at the edge of stability"), hence
lr_too_high, all the more when the LR was rising. A pattern present from the first window under a steady LR is only
information while the loss keeps falling (below 0.7x its level a fifth into the run): taking datasets in turn,
or unshuffled batches, gives the same periodic loss. Under an oscillation that stops the loss from falling the
run is harmed whatever the reason: a warning. A pattern in fewer than half of the windows from its onset on is
information too: past the stability edge the oscillation persists (Cohen et al. 2021), while two players trading
(a GAN's losses) come and go. Any oscillation of a log with several training losses (two optimizers) is
information: simultaneous gradient steps of two players circle their equilibrium rather than settle (Mescheder et
al. 2018, "Which training methods for GANs do actually converge?"), whatever the learning rate.
"""
from __future__ import annotations

import numpy as np

from trainguard.core.findings import Severity
from trainguard.doctor.analysis.causes import evidence_round, lr_change
from trainguard.doctor.analysis.signals import Signals, block_trend
from trainguard.doctor.findings import DoctorFinding, json_step

__all__ = ["analyse_oscillation"]

_WINDOW = 256
_MAX_WINDOWS = 64
_MAX_PERIOD = 64
_POWER_SHARE = 0.3
_SWING = 0.03
_STILL_FALLING = 0.7  # the final level below 0.7x the level a fifth into the run
_PERSISTENT = 0.5  # a warning needs the pattern in at least half the windows from its onset on


def analyse_oscillation(sig: Signals) -> list[DoctorFinding]:
    if sig.n < 128:
        return []
    window = min(_WINDOW, sig.n)
    # Back-to-back windows plus one flush with the end, so the last stretch of the run is always seen.
    starts = np.unique(np.append(np.arange(0, sig.n - window + 1, window), sig.n - window))
    if len(starts) > _MAX_WINDOWS:
        starts = starts[np.linspace(0, len(starts) - 1, _MAX_WINDOWS).astype(int)]
    # A trend slower than the longest period we look for, so the swing stays in the residual.
    trend = block_trend(sig.y, min(2 * _MAX_PERIOD, max(8, sig.n // 8)))
    residual = sig.y - trend
    swing = _SWING if sig.log_scale else _SWING * max(float(np.median(np.abs(sig.y))), 1e-12)
    hits = []
    for start in starts:
        r = residual[start:start + window] - residual[start:start + window].mean()
        power = np.abs(np.fft.rfft(r)) ** 2
        freqs = np.fft.rfftfreq(window)
        # At least four cycles in the window, so a slow drift of the trend is not taken for a swing.
        band = freqs >= max(1.0 / _MAX_PERIOD, 4.0 / window)
        total = power[1:].sum()
        if total <= 0 or not band.any():
            continue
        k = int(np.flatnonzero(band)[np.argmax(power[band])])
        share = float(power[max(1, k - 1):k + 2].sum() / total)
        lo, hi = np.percentile(r, [10, 90])
        if share >= _POWER_SHARE and -lo >= swing and hi >= swing:
            hits.append((int(start), 1.0 / freqs[k], share, float(hi - lo)))
    if len(hits) < 2 and not (len(hits) == 1 and len(starts) == 1):
        return []
    onset, period, share, width = hits[0]
    evidence: dict = {
        "onset_step": json_step(sig.steps[onset]), "period_points": evidence_round(period),
        "period_steps": evidence_round(period * float(np.median(np.diff(sig.steps)))),
        "power_share": evidence_round(share), "windows": f"{len(hits)} of {len(starts)}",
    }
    if sig.log_scale:
        evidence["swing_ratio"] = evidence_round(float(np.exp(width)))
    lr = lr_change(sig, onset + window // 2, window)
    if lr:
        evidence.update(lr)
    message = (f"loss oscillates with a period of about {evidence['period_steps']:g} steps from step "
               f"{evidence['onset_step']} ({len(hits)} of {len(starts)} windows)")
    severity = Severity.WARNING
    # Progress of the coarse trend from a fifth of the run to its end (log ratio on a log scale).
    progress = float(sig.level[-1] - sig.level[sig.n // 5])
    evidence["loss_progress_after_first_fifth"] = evidence_round(float(np.exp(progress)) if sig.log_scale else progress)
    falling = progress <= np.log(_STILL_FALLING) if sig.log_scale else progress < 0
    since_onset = int((starts >= onset).sum())
    if len(hits) < _PERSISTENT * since_onset:
        # Past the stability edge the loss keeps oscillating: once there, sharpness hovers at 2 / lr for the
        # rest of training (Cohen et al. 2021). A pattern in a minority of the windows since it began comes and
        # goes (two players trading, a GAN's losses): information.
        severity = Severity.INFO
        evidence["note"] = f"in {len(hits)} of the {since_onset} windows since it began: it comes and goes"
    elif onset == int(starts[0]) and len(starts) > 1 and not (lr and lr["lr_rising"]) and falling:
        # A pattern there from the first step under a steady LR, while the loss keeps falling, is as likely a
        # fixed order of the data (datasets taken in turn, unshuffled batches) as an LR past the stability edge.
        # One under which the loss stops falling is harming the run either way.
        severity = Severity.INFO
        evidence["note"] = "present from the start under a steady LR: a fixed data order gives the same pattern"
    if sig.series.other_losses and severity >= Severity.WARNING:
        severity = Severity.INFO
        evidence["note"] = (f"the log has {len(sig.series.other_losses) + 1} training losses: two players' steps "
                            f"circle their equilibrium")
    return [DoctorFinding("oscillation", severity, float(sig.steps[onset]), "none", evidence, message)]
