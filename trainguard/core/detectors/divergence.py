"""``divergence``: the loss climbing back up, far above the best it reached.

Two rules on positive losses (a loss that can go negative has no scale to be "far above"; the rules skip it):

* **Diverged** (ERROR) — the loss is above ``factor`` (10) times the best smoothed loss and above the starting
  (first finite) loss on ``patience`` (3) consecutive steps: the run has lost everything it learned. The shape of
  AUTOTRAINER's and TensorFlow's divergence checks (loss above a multiple of its minimum), made robust to
  minibatch noise by smoothing the minimum and requiring consecutive steps.
* **Rising** (WARNING) — the smoothed loss is at least ``rise_factor`` (2) times its best *and* has given back at
  least ``regress`` (25%) of the progress from the start to the best, on ``rise_patience`` (10) consecutive
  steps. The second condition keeps a converged run quiet: a loss that went 2.3 -> 0.001 and wobbles to 0.003
  has tripled but given back 0.1% of its progress.

The smoothed loss is a bias-corrected exponential moving average (as Adam's moments) with a ``halflife`` of 10
steps, fed with the loss capped at twice the current average so that a lone spike barely moves it; its lowest
value is the "best". One finding per episode, one more on escalation from WARNING to ERROR; re-arms after
``rearm_after`` (50) steps on which neither rule holds. Non-finite losses are skipped (``non_finite`` reports
them).

>>> from trainguard.core.stats import StepStats
>>> det = divergence()
>>> state = det.init()
>>> losses = [1.0] * 5 + [0.5] * 20 + [20.0] * 3
>>> for step, loss in enumerate(losses):
...     found, state = det.update(StepStats(step=step, loss=loss), state)
>>> found[0].step, found[0].severity.name
(27, 'ERROR')
"""
from __future__ import annotations

import math
from typing import NamedTuple

from trainguard.core.detector import ARMED, Detector, Episode, episode_update
from trainguard.core.detectors._read import finite
from trainguard.core.detectors._smooth import robust_ema
from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import StepStats

__all__ = ["divergence", "DivergenceState"]


class DivergenceState(NamedTuple):
    start: float  # the first finite loss (NaN: none yet)
    ema: float  # EMA of the finite losses, started at 0 ...
    ema_weight: float  # ... and 1 - decay**n, so that ema / ema_weight is the bias-corrected average (Adam's)
    best: float  # lowest smoothed loss so far (inf: none yet)
    far_steps: int  # consecutive steps meeting the "diverged" rule
    rising_steps: int  # consecutive steps meeting the "rising" rule
    episode: Episode


def divergence(factor: float = 10.0, patience: int = 3, rise_factor: float = 2.0, regress: float = 0.25,
               rise_patience: int = 10, halflife: float = 10.0, rearm_after: int = 50) -> Detector:
    alpha = 1.0 - 0.5 ** (1.0 / halflife)

    def init() -> DivergenceState:
        return DivergenceState(math.nan, 0.0, 0.0, math.inf, 0, 0, ARMED)

    def update(stats: StepStats, state: DivergenceState):
        loss = stats.loss
        if not finite(loss) or not stats.loss_finite:
            return (), state
        start = loss if math.isnan(state.start) else state.start
        best = state.best
        ema, ema_weight = robust_ema(state.ema, state.ema_weight, loss, alpha)
        smooth = ema / ema_weight
        far_steps = rising_steps = 0
        if 0 < best < math.inf:
            far_steps = state.far_steps + 1 if loss > factor * best and loss > start else 0
            rising = smooth >= rise_factor * best and smooth - best >= regress * (start - best)
            rising_steps = state.rising_steps + 1 if rising else 0
        severity = None
        if far_steps >= patience:
            severity = Severity.ERROR
        elif rising_steps >= rise_patience:
            severity = Severity.WARNING
        report, episode = episode_update(state.episode, severity, rearm_after)
        new_state = DivergenceState(start, ema, ema_weight, min(best, smooth), far_steps, rising_steps,
                                    episode)
        if not report:
            return (), new_state
        given_back = (smooth - best) / (start - best) if start > best else None
        evidence = {"rule": "diverged" if severity == Severity.ERROR else "rising", "loss": loss,
                    "smoothed_loss": smooth, "best_smoothed_loss": best, "start_loss": start,
                    "ratio_to_best": loss / best, "progress_given_back": given_back,
                    "steps": far_steps if severity == Severity.ERROR else rising_steps}
        if severity == Severity.ERROR:
            message = (f"divergence at step {stats.step}: loss {loss:.4g} is {loss / best:.3g}x its best "
                       f"{best:.4g} and above the starting loss {start:.4g} for {far_steps} steps")
        else:
            message = (f"loss rising at step {stats.step}: smoothed loss {smooth:.4g} is {smooth / best:.3g}x "
                       f"its best {best:.4g}")
            if given_back is not None:
                message += f", giving back {given_back:.0%} of the progress since the start"
        return (Finding("divergence", severity, stats.step, None, evidence, message),), new_state

    return Detector("divergence", init, update)
