"""``plateau``: the loss does not come down from where it started.

Rule: the diagnosis engine's ``course.stall_from_start`` (so the doctor's finding and the engine's causes see the
same stall): stuck after a short first drop at a trivial predictor's level or at half the first loss, or never 10%
below the first row (a coarse log's first row is the mean of the first ``logging_steps`` losses). SageMaker
Debugger's ``LossNotDecreasing`` rule compares losses between intervals the same way. Positive losses only, as
the engine's measure: a loss that takes both signs (a policy-gradient surrogate, a critic) has no level that
measures the fit.

Severity by harm (docs/severity.md). A warning needs a run that got nowhere: at a trivial predictor's level, or
a course (five block medians after the first tenth, and the final level) never 10% below its start: the first row, the mean of the
first ``logging_steps`` losses in a coarse log (one far above the rest holds the drop of a run that converged
within it; one below them may be the best the run ever was), but no lower than the median of the first three rows
allows within two robust standard deviations of the point-to-point noise (a row subsampled from a noisy run may be
a lucky low one). The same test, without the engine's 16 points, finds a stall on a short epoch-level log
(10 epochs). A loss flat after a first drop at some other level is information: a converged run with a high floor
(a reconstruction's binary cross-entropy, a diffusion loss) looks the same on a coarse, averaged log. So is any
stall of a log with several training losses (two optimizers): two players' losses balance rather than fall
(Goodfellow et al. 2014: at the game's equilibrium the discriminator outputs 1/2 and its loss stays at 2 ln 2).
The evidence carries the gradient norm and LR when logged, and the stall's noise; the diagnosis engine names the
candidates (dead units, vanishing gradients, saturation, an LR too low or, under a jumpy loss, too high).
"""
from __future__ import annotations

import numpy as np

from trainguard.core.diagnosis.course import levels, stall_from_start
from trainguard.core.findings import Severity
from trainguard.doctor.analysis.causes import evidence_round
from trainguard.doctor.analysis.signals import Signals
from trainguard.doctor.findings import DoctorFinding

__all__ = ["analyse_plateau"]

_MIN_POINTS = 10
_NEVER_BELOW = 0.10
_CLIMB = 1.5  # further up than this from the start is a divergence, not a stall
_CONVERGED = 1e-3  # a loss this close to 0 that stays there is converged, not stuck


def analyse_plateau(sig: Signals) -> list[DoctorFinding]:
    if sig.n < _MIN_POINTS or not sig.log_scale:
        return []
    losses = np.exp(sig.y)
    stall = stall_from_start(sig.series.loss) or {}
    got_nowhere = _got_nowhere(losses)
    last = float(np.median(losses[-max(3, sig.n // 10):]))
    if not (stall or got_nowhere) or last <= _CONVERGED:
        return []
    trivial = "trivial_predictor" in stall
    evidence: dict = {"first_loss": evidence_round(float(np.median(losses[:3]))), "last_loss": evidence_round(last),
                      "steps": int(sig.steps[-1] - sig.steps[0]), "points": int(sig.n), "got_nowhere": got_nowhere}
    evidence.update({k: v for k, v in stall.items() if k in ("never_improved", "noise", "quiet",
                                                              "trivial_predictor", "trivial_loss")})
    grad = sig.column_at("grad_norm", 0, sig.n)
    lr = sig.column_at("lr", 0, sig.n)
    if len(grad):
        evidence["median_grad_norm"] = evidence_round(float(np.median(grad)))
    if len(lr):
        evidence["median_lr"] = evidence_round(float(np.median(lr)))
    severity = Severity.WARNING if (got_nowhere or trivial) else Severity.INFO
    others = sig.series.other_losses
    if others:
        severity = Severity.INFO
        evidence["note"] = (f"the log has {len(others) + 1} training losses ({', '.join(others[:3])} too): two "
                            f"players' losses balance rather than fall")
    if got_nowhere:
        message = (f"loss stays at {evidence['last_loss']:g} from the start ({evidence['points']} points, never 10% "
                   f"below its first row)")
    elif trivial:
        message = f"loss stuck at {evidence['last_loss']:g}, a trivial predictor's level ({stall['trivial_predictor']})"
    else:
        message = f"loss flat at {evidence['last_loss']:g} after its first drop (from {evidence['first_loss']:g})"
    if others:
        message += f"; the log has {len(others) + 1} training losses"
    return [DoctorFinding("plateau", severity, float(sig.steps[0]), "none", evidence, message)]


def _got_nowhere(losses: np.ndarray) -> bool:
    logs = np.log(losses)
    noise = 1.4826 * float(np.median(np.abs(np.diff(logs)))) / np.sqrt(2)
    # A first row below the next ones counts only as far as the noise cannot explain it (two robust sigmas).
    start = max(float(losses[0]), min(float(np.median(losses[:3])), float(losses[0]) * float(np.exp(2 * noise))))
    course = levels(losses[max(1, len(losses) // 10):], blocks=5)
    last = float(np.median(losses[-max(3, len(losses) // 10):]))
    return (min(float(course.min()), last) >= (1 - _NEVER_BELOW) * start
            and last <= _CLIMB * float(losses[0]))
