"""``plateau``: the loss has stopped improving while it is still far from where a finished run ends.

Rule (Keras ``ReduceLROnPlateau`` / ``EarlyStopping``: no improvement larger than ``min_delta`` for ``patience``
epochs; AUTOTRAINER's "slow convergence"): the smoothed loss has not improved by more than ``min_improvement``
(1%, relative) over the last ``window`` (200) steps. The smoothed loss is a bias-corrected EMA (as Adam's moments)
with a ``halflife`` of 50 steps, fed with the loss capped at twice the average (a lone spike barely moves it), and
it is compared with its own value ``window`` steps earlier, not with its best:
the minimum of a noisy series is a lucky low that a healthy but noisy run may take long to beat.

What a plateau means depends on how far the run got, measured against the starting loss (the mean of the first
``start_steps`` (20) finite losses). The first window starts after them and one half-life, so a run stuck from
the start is reported after ~250 steps; a plateau reached later takes the window plus the EMA's settling time.

* smoothed loss >= ``1 - stuck_progress`` (90%) of the start: stuck from the start — WARNING when the weights
  barely move (the median update ratio ||dW|| / ||W|| of the weight tensors on the latest sampled step is below
  ``still_update`` (1e-4), a tenth of the ~1e-3 of a healthy run (Karpathy, "A Recipe for Training Neural
  Networks"): a learning rate far too low, dead or vanishing gradients) or when no update ratio is known; INFO
  when they move (the two losses of a GAN stay near their start by design while both networks learn);
* below that but above ``converged`` (5%) of the start: a plateau after progress — INFO (a schedule's cue);
* at or below 5% of the start: a run that has finished learning — nothing. A flat tail after a big drop is
  convergence, not a pathology.

A stall is flat: the smoothed loss stayed within ``flat_band`` (10%) of its value a window ago at every
checkpoint since (a loss that jumped on new data and is coming back down is not a plateau). A window across which
the learning rate rose (a warm restart, a warm-up) is not judged: the schedule raised the
loss on purpose. One finding per plateau; it ends when the smoothed loss falls ``rearm_improvement`` (5%) below the level where the
plateau was reported. The relative tests use |loss|, and a loss whose start is not positive gets INFO only.
Non-finite losses are skipped.

>>> from trainguard.core.stats import StepStats
>>> det = plateau()
>>> state = det.init()
>>> for step in range(300):
...     found, state = det.update(StepStats(step=step, loss=2.3 + 0.01 * (step % 2)), state)
...     if found:
...         break
>>> found[0].step, found[0].severity.name
(250, 'WARNING')
"""
from __future__ import annotations

import math
from typing import NamedTuple

from trainguard.core.detector import ARMED, Detector, Episode, episode_update
from trainguard.core.detectors._read import finite, kernels
from trainguard.core.detectors._smooth import robust_ema
from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import StepStats

__all__ = ["plateau", "PlateauState"]

CHECKPOINTS = 10  # the smoothed loss is recorded every window // 10 steps


class PlateauState(NamedTuple):
    start_sum: float  # sum of the first `start_steps` finite losses
    start_count: int  # how many of them were seen
    ema: float  # EMA of the finite losses, started at 0 ...
    ema_weight: float  # ... and 1 - decay**n: ema / ema_weight is the bias-corrected average
    history: tuple[tuple[int, float], ...]  # (step, smoothed loss) checkpoints covering the last `window` steps
    level: float  # smoothed loss when the current plateau was reported (NaN: none)
    update_ratio: float  # median update ratio of the weight tensors on the latest sampled step (NaN: unknown)
    lr: float | None  # the previous step's learning rate
    lr_rose_at: int  # the last step whose learning rate was above the one before
    episode: Episode


def plateau(window: int = 200, min_improvement: float = 0.01, halflife: float = 50.0, converged: float = 0.05,
            stuck_progress: float = 0.1, rearm_improvement: float = 0.05, start_steps: int = 20,
            still_update: float = 1e-4, flat_band: float = 0.1) -> Detector:
    alpha = 1.0 - 0.5 ** (1.0 / halflife)
    every = max(1, window // CHECKPOINTS)

    def init() -> PlateauState:
        return PlateauState(0.0, 0, 0.0, 0.0, (), math.nan, math.nan, None, -(10 ** 18), ARMED)

    def update(stats: StepStats, state: PlateauState):
        loss, step = stats.loss, stats.step
        update_ratio = _median_update_ratio(stats) if stats.layers else state.update_ratio
        lr = stats.lr if finite(stats.lr) else None
        lr_rose_at = step if (lr is not None and state.lr is not None and lr > state.lr) else state.lr_rose_at
        lr = lr if lr is not None else state.lr
        if not finite(loss) or not stats.loss_finite:
            return (), state._replace(update_ratio=update_ratio, lr=lr, lr_rose_at=lr_rose_at)
        start_sum, start_count = state.start_sum, state.start_count
        if start_count < start_steps:
            start_sum, start_count = start_sum + loss, start_count + 1
        ema, ema_weight = robust_ema(state.ema, state.ema_weight, loss, alpha)
        smooth = ema / ema_weight
        history = state.history
        # Checkpoints start once the start is known and the EMA has a half-life of data, so that both ends of a
        # comparison lag the loss alike.
        if start_count >= start_steps and ema_weight >= 0.5 and (not history or step - history[-1][0] >= every):
            history = (history + ((step, smooth),))[-(CHECKPOINTS + 2):]
        reference = _reference(history, step - window)
        start = start_sum / start_count
        level = state.level
        severity = None
        if not math.isnan(level):  # in a reported plateau until the loss falls clearly below it
            if smooth > level - rearm_improvement * abs(level):
                severity = Severity(state.episode.reported)
            else:
                level = math.nan
        elif (reference is not None and smooth > reference[1] - min_improvement * abs(reference[1])
              and lr_rose_at < reference[0] and _flat(history, reference, smooth, flat_band)):
            severity = _severity(smooth, start, converged, stuck_progress)
            if severity == Severity.WARNING and update_ratio >= still_update:
                severity = Severity.INFO  # stalled while the weights move: not stuck (a GAN)
        report, episode = episode_update(state.episode, severity, 1)
        if report:
            level = smooth
        new_state = PlateauState(start_sum, start_count, ema, ema_weight, history, level, update_ratio, lr, lr_rose_at,
                                 episode)
        if not report:
            return (), new_state
        ref_step, ref_loss = reference
        evidence = {"smoothed_loss": smooth, "smoothed_loss_before": ref_loss, "steps": step - ref_step,
                    "improvement": (ref_loss - smooth) / abs(ref_loss) if ref_loss else 0.0,
                    "min_improvement": min_improvement, "start_loss": start,
                    "fraction_of_start": smooth / start if start > 0 else None}
        if not math.isnan(update_ratio):
            evidence["update_ratio"] = update_ratio
        if severity == Severity.WARNING:
            text = f"no progress since the start ({start:.4g})"
        elif start > 0 and smooth / start >= 1.0 - stuck_progress:
            text = f"no progress since the start ({start:.4g}), while the weights move (update ratio {update_ratio:.2g})"
        elif start > 0:
            text = f"at {smooth / start:.0%} of the starting loss {start:.4g}"
        else:
            text = f"starting loss {start:.4g}"
        message = (f"loss plateau at step {step}: the smoothed loss {smooth:.4g} has not improved by more than "
                   f"{min_improvement:.0%} in {step - ref_step} steps, {text}")
        return (Finding("plateau", severity, step, None, evidence, message),), new_state

    return Detector("plateau", init, update, light=True)


def _median_update_ratio(stats: StepStats) -> float:
    ratios = sorted(w.update_ratio for w in kernels(stats.layers) if finite(w.update_ratio))
    return ratios[len(ratios) // 2] if ratios else math.nan


def _flat(history: tuple[tuple[int, float], ...], reference: tuple[int, float], smooth: float, band: float) -> bool:
    """Whether the smoothed loss stayed within ``band`` (relative) since the reference: a stall, not a loss that
    rose (new data, a bad stretch) and is coming back down."""
    seen = [loss for step, loss in history if step >= reference[0]] + [smooth]
    return max(seen) - min(seen) <= band * abs(reference[1])


def _reference(history: tuple[tuple[int, float], ...], at_or_before: int) -> tuple[int, float] | None:
    """The latest checkpoint at least a window old."""
    found = None
    for checkpoint in history:
        if checkpoint[0] > at_or_before:
            break
        found = checkpoint
    return found


def _severity(smooth: float, start: float, converged: float, stuck_progress: float) -> Severity | None:
    if start <= 0:
        return Severity.INFO
    fraction = smooth / start
    if fraction <= converged:
        return None
    return Severity.WARNING if fraction >= 1.0 - stuck_progress else Severity.INFO
