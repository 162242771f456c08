"""The course of the loss over a whole run, from its finite points alone: what a coarse, loss-only log (one row
every ``logging_steps``, an epoch-level CSV) carries as well as a live guard's every-step stream.

Every measure here counts *points*, not steps, so a log written every 10 steps reads like one written every
step. Each is a pure function of arrays (steps, losses, an optional column) returning its numbers, or None when
the run does not show the pattern; the rules and the doctor's analyses share them.

- ``first_loss_scale``: the first loss against the loss a trivial predictor of standardized targets gives
  (mean squared error ~1 when it predicts 0; cross-entropy ln K <= ln 1e6 ~ 14 for uniform predictions over K
  classes). A first loss >= 1e3 is orders of magnitude above any of them: the targets, or the outputs the inputs
  produce, are far from unit scale (LeCun et al. 1998, "Efficient BackProp", sec. 4.3).
- ``stall_from_start``: after at most its first 10% of points the loss never improves again, at a level no
  better than half the first loss or at a trivial predictor's level (ln K for K <= 20 classes, or the targets'
  variance or second moment when known), or it never gets 10% below its first value. SageMaker Debugger's
  ``LossNotDecreasing`` compares losses between intervals the same way. A quiet stall (point-to-point noise of
  the log-loss <= 5%) is a network that outputs (about) a constant; a jumpy one, steps that overshoot. A
  ``frozen`` stall repeats one value at every point from the first, to within ``FROZEN`` (1e-6, a few float32
  roundings: a shuffled epoch's mean of the same constant predictions moves by an ulp or two; an epoch-level log,
  a fixed batch): no update reached the output at all. Dead, vanishing or saturated hidden units leave the output
  layer its gradient, so it first learns the trivial predictor (the loss drops to it, then may freeze there); a
  loss that never left its first value had an output that got no gradient either.
- ``climb``: the final level is >= 1.5x the best level (a block median, or the first point when the loss rose
  from there) and has given back >= 25% of the progress from the start to the best (the shape of AUTOTRAINER's
  and TensorFlow's divergence checks, on block medians so a spike does not count), and the rise stands out of
  the point-to-point noise (>= 3 robust standard deviations).
- ``linear_decline``: the loss falls at a steady rate far from convergence: block medians that fall from each
  block to the next, the second half of the run losing 0.65x to 1.5x as much as the first (a healthy run's
  decline decelerates: the healthy corpus' second halves lose <= 0.23x the first's, its noisy diffusion model
  0.5x; a fall that speeds up is a network leaving the plateau of its initialization, the sigmoid learning
  curves of Saxe et al. 2014), a total fall >= 1% and >= 5x the point-to-point noise of the log-loss. CS231n
  ("Neural Networks Part 3", babysitting the learning process): "with low learning rates the improvements will
  be linear"; with a good one they look exponential.
- ``progress_as_lr_decays``: the loss improved only once the schedule brought the LR down (details there).
- ``column_change``: a column's median just before a point against an earlier stretch (an LR that rose into the
  trouble; a gradient-norm run-up before a spike).
- ``recovery``: whether the loss came back after a point (a bad batch) or stayed up (a scale or LR problem).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["FIRST_LOSS_UNSCALED", "MIN_POINTS", "first_loss_scale", "trivial_level", "stall_from_start", "climb",
           "linear_decline", "progress_as_lr_decays", "column_change", "recovery", "levels", "constant_output_like",
           "FROZEN"]

FIRST_LOSS_UNSCALED = 1e3
_TRIVIAL_CLASSES = range(2, 21)
_TRIVIAL_TOLERANCE = 0.02
_STALL_FLAT = 0.05
_STALL_DIP = 0.10
QUIET_NOISE = 0.05
FROZEN = 1e-6
# Uncorrelated points: a lag-1 autocorrelation within 3 standard errors (1 / sqrt(n) for independent points) of 0.
_IID_SIGMAS = 3.0
_CLIMB = 1.5
_GIVEN_BACK = 0.25
MIN_POINTS = 8
_LINEAR = 0.65
_ACCELERATING = 1.5
_FALLING = 0.9
_LINEAR_MIN_FALL = 0.01
_LINEAR_TREND = 5.0
_LR_DECAYED = 2.0
_LATE_PROGRESS = 1.5


def levels(losses: np.ndarray, blocks: int = 20, min_size: int = 2) -> np.ndarray:
    """Median of each of about ``blocks`` consecutive blocks (at least ``min_size`` points each): the loss's
    course without its minibatch noise and isolated spikes."""
    size = max(min_size, len(losses) // blocks)
    full = len(losses) // size
    if full == 0:
        return np.array([float(np.median(losses))]) if len(losses) else np.empty(0)
    return np.median(losses[: full * size].reshape(full, size), axis=1)


def first_loss_scale(losses: np.ndarray, trivial: float | None = None) -> dict | None:
    """The first finite loss (median of the first 3 points) when it is orders of magnitude above the trivial
    predictor's loss of standardized targets: >= 1e3, or >= 1e3x ``trivial`` when the targets' own trivial
    loss is known and at least 1."""
    finite = losses[np.isfinite(losses)]
    if len(finite) < 3:
        return None
    first = float(np.median(finite[:3]))
    reference = max(1.0, trivial or 1.0)
    if not first >= FIRST_LOSS_UNSCALED * reference:
        return None
    return {"first_loss": first, "trivial_reference": reference, "orders_above": round(math.log10(first / reference), 2)}


def trivial_level(level: float, targets_second_moment: float | None = None,
                  targets_variance: float | None = None) -> dict | None:
    """Which trivial predictor's loss ``level`` sits at, if any: the mean squared error of predicting the
    targets' mean (their variance) or 0 (their second moment) when the targets' scale is known (within 10%,
    ``measured``), or uniform cross-entropy over K classes (ln K, K <= 20, within 2%)."""
    if not (math.isfinite(level) and level > 0):
        return None
    for what, reference in (("mse of predicting the targets' mean", targets_variance),
                            ("mse of predicting 0", targets_second_moment)):
        if reference and abs(level / reference - 1) <= 5 * _TRIVIAL_TOLERANCE:
            return {"trivial_predictor": what, "trivial_loss": reference, "measured": True}
    for k in _TRIVIAL_CLASSES:
        if abs(level / math.log(k) - 1) <= _TRIVIAL_TOLERANCE:
            return {"trivial_predictor": f"uniform over {k} classes", "trivial_loss": round(math.log(k), 4)}
    return None


def stall_from_start(losses: np.ndarray, targets_second_moment: float | None = None,
                     targets_variance: float | None = None) -> dict | None:
    """The loss made no progress: it stopped improving after at most its first 10% of points, stuck quietly far
    above zero at no better than half its first value or at a trivial predictor's level, or it never got 10%
    below its first value at all. ``noise`` is the point-to-point robust standard deviation of the log-loss after the
    start: a network that outputs a constant has a quiet loss (only the batches' label mix moves it), one whose
    steps overshoot a jumpy one (``quiet`` below ``QUIET_NOISE``); ``batch_noise_only`` when its points are
    uncorrelated (``constant_output_like``)."""
    finite = losses[np.isfinite(losses)]
    if len(finite) < 2 * MIN_POINTS or (finite <= 0).any():
        return None
    start = max(1, len(finite) // 10)
    rest = levels(finite[start:], blocks=5)
    early, late = float(rest[0]), float(np.median(finite[-max(3, len(finite) // 10):]))
    first = float(np.median(finite[:3]))
    if not (early > 1e-3 and late > 1e-3):
        return None
    flat = abs(late / early - 1) <= _STALL_FLAT and float(rest.min()) >= (1 - _STALL_DIP) * early
    trivial = trivial_level(late, targets_second_moment, targets_variance)
    lowest_start = min(first, float(finite[0]))  # a coarse log's first row may already be the best it got
    # ... and did not climb far above it either (that is a divergence, ``climb``).
    never_improved = (float(rest.min()) >= (1 - _STALL_DIP) * lowest_start
                      and (1 - _STALL_DIP) * lowest_start <= late <= _CLIMB * lowest_start)
    noise = _noise(np.log(finite[start:]))
    # Flat after a first drop is a stall only when quiet too, or at the trivial loss the targets' measured scale
    # gives (the model predicts their mean): a healthy run that converges within its first 10% to a noisy floor
    # is flat as well, while a network that outputs a constant has a quiet loss.
    at_measured_trivial = bool(trivial and trivial.get("measured"))
    if not ((flat and (noise <= QUIET_NOISE or at_measured_trivial) and (trivial or late >= 0.5 * first))
            or never_improved):
        return None
    lag1 = _lag1_autocorrelation(np.log(finite[start:]))
    return {"first_loss": first, "stalled_at": late, "from_point": start, "points": int(len(finite)),
            "never_improved": bool(never_improved), "noise": round(noise, 4), "quiet": bool(noise <= QUIET_NOISE),
            "frozen": bool(np.max(np.abs(finite - finite[0])) <= FROZEN * finite[0]),
            "lag1_autocorrelation": round(lag1, 3),
            "batch_noise_only": bool(abs(lag1) <= _IID_SIGMAS / math.sqrt(len(finite) - start)),
            **(trivial or {})}


def constant_output_like(stall: dict) -> bool:
    """A stall whose loss moves as a network with a constant output makes it move: quietly, or only by the
    batches' own scatter (uncorrelated from one point to the next: a small regression batch's MSE of a constant
    predictor scatters by ~sqrt(2 / batch) of itself, far above ``QUIET_NOISE``). Steps that overshoot move the
    model, and a loss the model drives wanders or alternates: its point-to-point correlation stands out."""
    return bool(stall["quiet"] or stall["batch_noise_only"])


def _lag1_autocorrelation(x: np.ndarray) -> float:
    centred = x - x.mean()
    power = float(np.dot(centred, centred))
    return float(np.dot(centred[:-1], centred[1:])) / power if power > 0 else 0.0


def _noise(logs: np.ndarray) -> float:
    """Robust standard deviation of single points of a log-loss: scaled MAD of its differences over sqrt 2."""
    return 1.4826 * float(np.median(np.abs(np.diff(logs)))) / math.sqrt(2) if len(logs) > 2 else 0.0


def climb(losses: np.ndarray) -> dict | None:
    """The loss climbed back from its best level and stayed up (positive losses only: a loss that can be
    negative has no scale to be far above)."""
    finite = losses[np.isfinite(losses)]
    if len(finite) < 2 * MIN_POINTS or (finite <= 0).any():
        return None
    logs = np.log(finite)
    course = np.log(levels(finite, min_size=4))
    tail = max(1, len(course) // 10)
    best_i = int(np.argmin(course[:-tail]))
    best, final, start = float(course[best_i]), float(np.median(course[-tail:])), float(course[0])
    if logs[0] < best:
        # The loss rose from its very first point: a coarse log's first row (the mean of the first
        # ``logging_steps`` losses) may already be the lowest the run ever was.
        best_i, best = 0, float(logs[0])
    rise = final - best
    # The point-to-point noise of the log-loss (scaled MAD of its differences, over sqrt 2): a climb must stand
    # out of it, so a flat, noisy loss whose block medians wander is no divergence.
    noise = _noise(logs)
    if rise < max(math.log(_CLIMB), 3 * noise) or (start > best and rise < _GIVEN_BACK * (start - best)):
        return None
    block = len(finite) / len(course)
    return {"start_loss": math.exp(start), "best_loss": math.exp(best), "final_loss": math.exp(final),
            "final_over_best": round(math.exp(rise), 3), "onset_point": int(best_i * block + block / 2)}


def linear_decline(losses: np.ndarray) -> dict | None:
    """The loss falls steadily and about linearly, without the deceleration of a run converging."""
    finite = losses[np.isfinite(losses)]
    if len(finite) < MIN_POINTS or (finite <= 0).any():
        return None
    course = levels(finite, blocks=10, min_size=1)
    first, middle, last = float(course[0]), float(course[len(course) // 2]), float(course[-1])
    early_fall, late_fall = first - middle, middle - last
    noise = _noise(np.log(finite))
    falling = float(np.mean(np.diff(course) < 0))
    total = math.log(first / last) if last > 0 else 0.0
    if not (early_fall > 0 and _LINEAR * early_fall <= late_fall <= _ACCELERATING * early_fall and falling >= _FALLING
            and total >= max(_LINEAR_MIN_FALL, _LINEAR_TREND * noise)):
        return None
    return {"first_level": first, "last_level": last, "late_over_early_fall": round(late_fall / early_fall, 3),
            "falling_blocks": round(falling, 3), "log_fall_over_noise": round(total / noise, 1) if noise else None}


def progress_as_lr_decays(losses: np.ndarray, lrs: np.ndarray) -> dict | None:
    """The loss made its progress only once the schedule had lowered the LR: the logged LR's median fell >= 2x
    from the first half of the run to the second, and the log-loss fell >= 1.5x more in the second half than in
    the first (and by at least half). A run whose LR suits it makes most of its progress early, at the high LR
    (the healthy corpus' decaying schedules: the second half falls <= 0.92x the first, OneCycle's peak
    included); one whose LR is past what the loss tolerates improves only as the LR comes down (Smith 2017's LR
    range test: above the largest usable LR the loss stops improving)."""
    ok = np.isfinite(losses) & np.isfinite(lrs)
    loss, lr = losses[ok], lrs[ok]
    if len(loss) < MIN_POINTS or (loss <= 0).any() or (lr <= 0).any():
        return None
    half = len(lr) // 2
    lr_fall = float(np.median(lr[:half]) / np.median(lr[half:]))
    course = np.log(levels(loss, blocks=10, min_size=1))
    middle = len(course) // 2
    early, late = float(course[0] - course[middle]), float(course[middle] - course[-1])
    if lr_fall < _LR_DECAYED or late < math.log(2) or late < _LATE_PROGRESS * max(early, 0.0):
        return None
    return {"lr_fall": round(lr_fall, 3), "early_log_fall": round(early, 3), "late_log_fall": round(late, 3)}


def column_change(values: np.ndarray, at: int, width: int) -> float | None:
    """Median of the finite values in points ``at - width .. at`` over that of the ``4 * width`` points before
    them; None when either stretch has fewer than 2 values or the earlier median is not positive."""
    recent = values[max(0, at - width):at + 1]
    earlier = values[max(0, at - 5 * width):max(0, at - width)]
    recent, earlier = recent[np.isfinite(recent)], earlier[np.isfinite(earlier)]
    if len(recent) < 2 or len(earlier) < 2:
        return None
    before = float(np.median(earlier))
    return float(np.median(recent)) / before if before > 0 else None


def recovery(losses: np.ndarray, at: int, span: int = 20) -> dict | None:
    """The loss before point ``at`` (median of up to ``span`` finite points) against after it (points
    ``at + 2 ..``, up to ``span``, skipping the spike's own tail); None with fewer than 2 points on a side."""
    before = losses[max(0, at - span):at]
    after = losses[at + 2:at + 2 + span]
    before, after = before[np.isfinite(before)], after[np.isfinite(after)]
    if len(before) < 2 or len(after) < 2:
        return None
    b, a = float(np.median(before)), float(np.median(after))
    return {"loss_before": b, "loss_after": a, "recovered": bool(b > 0 and a <= 2.0 * b)}
