"""``loss_spike``: a loss far above its recent level; judged, on the severity ladder (docs/severity.md), by what
the run does next.

Spike onset (OLMo's spike rule, z >= 6 over 128 steps; PaLM's rollback-and-skip): the loss's rise above its recent
level has a robust z-score >= ``z`` (6) against the rises of the last ``window`` (128) finite losses, after
``min_history`` (20) of them, and the loss is at least ``min_rise`` (30%) above that level. The recent level is a
short bias-corrected EMA (``level_halflife`` 8 steps, a lone spike capped at twice the level), lowered by its lag
behind a falling loss: Brown's double exponential smoothing (``2 * EMA - EMA(EMA)``, NIST/SEMATECH e-Handbook
6.4.3.4), floored at the lowest of the last ``fast_level`` (3) losses (a line overshoots an exponential decay),
never raised. In a decay of 4.6% a step the EMA alone sits 2.1x above the loss and a 4x spike scored z < 6. The
rise is ``(loss - level) / |level|``; the episode is judged against the EMA. Judging rises rather than raw losses is ours: early in training the loss falls 2-3x
within 128 steps, which inflates a raw-loss MAD until a 4x spike scores z < 6. The 30% floor is ours too: in a
very quiet run a 10% bump is six MADs, yet no one calls it a spike. The z-score's scale is at least what the
window's 97.5th percentile implies (``_tail_z``): minibatch losses are heavy-tailed, and a MAD alone scored z >= 6
on 1 step in 6 of a healthy imbalanced classifier with batch 8 (docs/severity.md).

A spike episode is judged when it ends, or when it repeats:

* **Recovered** (INFO) — the loss is back within ``min_rise`` of the level it left on ``recovered_steps`` (3)
  consecutive steps, or the median loss of the ``settle_steps`` (50) steps after the onset is: an isolated spike
  the run recovered from (a bad batch, heavy-tailed minibatch noise). Reported when the episode ends.
* **Level shift** (WARNING) — ``settle_steps`` after the onset the median loss since it is still more than
  ``min_rise`` above the level it left, and its rise above that level exceeds the 97.5th percentile of the rises in
  the window before the spike, and it is not coming down (the median of the second half of those steps is above
  90% of the first half's): the run lost ground and stays there. A loss that jumps and then falls steadily is a
  change of data the run is learning (a curriculum switch, a new task): INFO. So is a loss raised by the
  learning rate rising within ``settle_steps`` before the onset or since (a warm restart, SGDR). A loss that has
  come down from the jump (the median since at most 90% of the spike's loss) but not yet by halves is being
  learned down at the slower rate a harder curriculum stage shows (Bengio et al. 2009: a fast fall in the first
  steps, then a slow one towards the harder data's higher floor): it is judged again after each further
  ``settle_steps``, INFO as soon as the median of the latest ``settle_steps`` losses is at most 90% of the first
  ``settle_steps``' (learning it down), a level shift if it is not ``learn_blocks`` (4) blocks after the onset.
  A jump the run learns back down is a change of data, not harm (OLMo 2 and Takase et al. 2023, "Spike No More",
  tell a spike from a level shift by what follows it).
* **Repeated** (WARNING) — the ``recurring``-th (3rd) large spike onset within ``recurring_window`` (512) steps
  (OLMo and PaLM act on spikes that recur; a bad sample comes back once an epoch). Large: the spike undoes at least
  ``min_give_back`` (half) of the progress from the start (the median of the first ``start_steps`` (10) losses) to
  the recent level. A converged run's spikes are huge against its level and small on the run's scale (0.0003 ->
  0.15 after a start at 2.0: 7% of its progress), and counting every spike warned on healthy runs. The spike is
  read as an ordinary draw of the window's upper tail: the level it implies, ``loss / (1 + q97.5 rise)``, is what
  gives progress back. With one example a step (online SGD, the PyTorch char-RNN tutorial) the loss is that
  example's, heavy-tailed by nature, and the window's q97.5 sits 8-10x above the level: a hard example read raw
  "undid" 130-280% of the progress of the fixed twin of ``torch_so14982358_sigmoid_output_0_to_100`` (MSE 17.9
  against the trivial 207) and warned; read through the tail, 11-21%. A mean over many examples has a small q97.5
  rise (0.08-0.16 at the large spikes of the batch-32 ``keras_fit_unstandardized_sample``), where the reading
  barely changes. A run with no
  progress beyond its batch-to-batch spread (the start above the level by less than the window's q97.5 rise) has
  none to give back: its spikes do not count (a stall is ``plateau``'s). On the corpus' DEV healthy runs, read
  through the tail, one spike undid 47% of the progress (batch 4) and one 120% (a task switch), never 2 large ones
  within 512 steps; the one unstandardized sample of ``keras_fit_unstandardized_sample`` undoes 57-68% each epoch
  (85-93% read raw). Onsets count once the
  window is full (the tail of fewer values is too loose to judge), and never once a loss <= 0 was seen (a policy
  gradient's loss has no scale), while the previous spike is still being judged (bad batches riding on a switch to
  harder data, before the level catches up), or within ``settle_steps`` of a rise of the learning rate (a warm
  restart's). One warning per repeated stretch; it ends after ``recurring_window`` steps without
  a large onset.

A loss spike is never an ERROR: a run that is broken shows it as ``non_finite`` or ``divergence``.

``evidence["grad_norm_led"]`` says whether the global gradient norm was itself anomalous (robust z >= ``grad_z``
(4) against its own window) at the spike's step or up to ``lead_steps`` (3) steps before: True points at an
optimizer instability (a large update, then the loss), False at the data (a bad batch on a calm gradient),
None when there is not enough gradient-norm history to tell. A finding's ``step`` is the spike's onset;
``evidence["judged_at"]`` is the step it was judged on. Non-finite losses are skipped (``non_finite`` reports them)
and never enter the window; a recent level of exactly 0 has no scale, and its step is not judged.

Per-step cost (~5 µs on one CPU core): two ``window.RobustTrack`` windows (rises, gradient norms), as in
``exploding_gradient``: cached medians refreshed every 16 steps, exact on a candidate step.

>>> from trainguard.core.stats import StepStats
>>> det = loss_spike()
>>> state = det.init()
>>> for step in range(40):
...     found, state = det.update(StepStats(step=step, loss=1.0 + 0.01 * (step % 3), grad_norm=1.0), state)
>>> found, state = det.update(StepStats(step=40, loss=5.0, grad_norm=1.0), state)
>>> found
()
>>> for step in range(41, 44):
...     found, state = det.update(StepStats(step=step, loss=1.0, grad_norm=1.0), state)
>>> found[0].step, found[0].severity.name, found[0].evidence["outcome"], found[0].evidence["grad_norm_led"]
(40, 'INFO', 'recovered', False)
"""
from __future__ import annotations

import math
import statistics
from typing import Any, NamedTuple

import numpy as np

from trainguard.core.detectors._read import finite
from trainguard.core.detectors._smooth import robust_ema
from trainguard.core.detector import Detector
from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import StepStats
from trainguard.core.window import (RobustTrack, robust_track, track_exact, track_push, track_size, track_values,
                                    track_z)

__all__ = ["loss_spike", "LossSpikeState", "SpikeEpisode"]

TAIL_QUANTILE, TAIL_SIGMAS = 0.975, 1.96  # a normal's 97.5th percentile is 1.96 sigma above its median
RECOVERING = 0.9  # a loss whose median fell by 10% from the first to the second half of the settling steps


class SpikeEpisode(NamedTuple):
    """A spike waiting to be judged."""

    onset: int  # step of the spike
    level: float  # the recent level the loss left
    tail_rise: float  # the 97.5th percentile of the rises before it
    evidence: dict[str, Any]  # what was measured at the onset
    after: tuple[float, ...]  # the losses since the onset, at most learn_blocks * settle_steps
    back: int  # consecutive steps, ending now, back within min_rise of the level


class LossSpikeState(NamedTuple):
    rises: RobustTrack  # (loss - level) / |level| of the last `window` finite losses
    level_ema: float  # the recent level: a robust EMA of the finite losses (see _smooth.robust_ema) ...
    level_weight: float  # ... with its bias correction
    norms: RobustTrack  # the last `window` finite global gradient norms
    grad_spike_step: int  # last step whose gradient norm was anomalous (-1: none)
    onsets: tuple[int, ...]  # onsets of large spikes (see `min_give_back`) within the last `recurring_window` steps
    lag_ema: float  # an EMA of the recent level (Brown's second smoothing), to measure the level's lag ...
    lag_weight: float  # ... with its bias correction
    last: tuple[float, ...]  # the last `fast_level` finite losses
    first: tuple[float, ...]  # the first `start_steps` finite losses: their median is where the run started
    signed: bool  # a loss <= 0 was seen: the loss has no scale (a policy gradient's), its spikes don't repeat
    pending: SpikeEpisode | None  # the spike being judged
    repeating: bool  # a repeated-spikes warning was given and no `recurring_window` steps without an onset passed since
    was_spike: bool  # whether the previous finite loss was a spike
    lr: float | None  # the previous step's learning rate
    lr_rose_at: int  # the last step whose learning rate was above the one before


def loss_spike(z: float = 6.0, window: int = 128, min_history: int = 20, min_rise: float = 0.3,
               level_halflife: float = 8.0, grad_z: float = 4.0, lead_steps: int = 3, recurring: int = 3,
               recurring_window: int = 512, min_give_back: float = 0.5, fast_level: int = 3, start_steps: int = 10,
               recovered_steps: int = 3, settle_steps: int = 50, learn_blocks: int = 4) -> Detector:
    alpha = 1.0 - 0.5 ** (1.0 / level_halflife)

    def init() -> LossSpikeState:
        return LossSpikeState(robust_track(window), 0.0, 0.0, robust_track(window), -1, (), 0.0, 0.0, (), (), False,
                              None, False, False, None, -(10 ** 18))

    def update(stats: StepStats, state: LossSpikeState):
        step = stats.step
        lr = stats.lr if finite(stats.lr) else None
        lr_rose_at = step if (lr is not None and state.lr is not None and lr > state.lr) else state.lr_rose_at
        state = state._replace(lr=lr if lr is not None else state.lr, lr_rose_at=lr_rose_at)
        norms, grad_spike_step = state.norms, state.grad_spike_step
        norm = stats.grad_norm
        if finite(norm) and stats.grads_finite:
            if track_size(norms) >= min_history and _robust_z(norms, norm, grad_z) >= grad_z:
                grad_spike_step = step
            norms = track_push(norms, norm)
        loss = stats.loss
        if not finite(loss) or not stats.loss_finite:
            return (), state._replace(norms=norms, grad_spike_step=grad_spike_step)

        level_ema, level_weight = robust_ema(state.level_ema, state.level_weight, loss, alpha)
        last = (state.last + (loss,))[-fast_level:]
        first = state.first if len(state.first) >= start_steps else state.first + (loss,)
        signed = state.signed or loss <= 0
        level = state.level_ema / state.level_weight if state.level_weight > 0 else 0.0
        lag_ema, lag_weight = state.lag_ema, state.lag_weight
        base = level
        if level > 0:
            lag_ema, lag_weight = lag_ema + alpha * (level - lag_ema), lag_weight + alpha * (1.0 - lag_weight)
            if state.lag_weight > 0 and len(state.last) == fast_level:
                # The EMA lags a falling loss (at 4.6% a step it sits 2.1x above it, and a 4x spike looks 1.9x).
                # Brown's double exponential smoothing removes the lag of a trend: level + (level - its own EMA),
                # floored at the lowest of the last few losses (a straight line overshoots an exponential decay).
                # Only ever lower: a rising level must not hide a spike.
                trend_free = 2.0 * level - state.lag_ema / state.lag_weight
                base = min(level, max(trend_free, min(state.last)))
        if level == 0.0 or base == 0.0:  # the first loss, or a level with no scale: nothing to judge against
            return (), state._replace(norms=norms, grad_spike_step=grad_spike_step, level_ema=level_ema,
                                      level_weight=level_weight, lag_ema=lag_ema, lag_weight=lag_weight, last=last,
                                      first=first, signed=signed)
        rise = (loss - base) / abs(base)
        spike, tail = None, math.nan
        if rise >= min_rise and track_size(state.rises) >= min_history:
            score, tail = _tail_z(state.rises, rise, z)
            if score >= z:
                spike = score
        onsets = state.onsets
        if onsets and onsets[0] <= step - recurring_window:
            onsets = tuple(s for s in onsets if s > step - recurring_window)
        repeating = state.repeating and bool(onsets)
        found: list[Finding] = []
        pending = state.pending
        if pending is not None:
            pending, judged = _judge(pending, loss, step, min_rise, recovered_steps, settle_steps, learn_blocks,
                                     pending.onset - lr_rose_at <= settle_steps)
            if judged is not None and not repeating:
                found.append(judged)
        new_onset = spike is not None and not state.was_spike  # a spike several steps long is one onset
        if new_onset:
            # How much of the run's progress the spike undid: a converged run's 0.0003 -> 0.15 is a 500x rise but
            # 7% of its way down from 2.0; the bad batch of the corpus' keras_fit_unstandardized_sample, 57-68%.
            # A loss that made no progress has none to give back (a stall is the plateau detector's), nor one whose
            # progress is within its batch-to-batch spread (the start above the level by less than the window's
            # q97.5 rise: a rare class in small batches, whose first batches are as likely high as low).
            start = statistics.median_high(first)  # a median: the first batch may be an outlier itself
            progressed = level > 0 and start > level * (1.0 + tail)
            # The spike read as an ordinary draw of the window's upper tail: the level it implies is loss / (1 +
            # q97.5 rise). With one example a step the loss is that example's, and the window's q97.5 alone is
            # 8-10x the level; a mean over many examples has a small q97.5 rise, and the reading barely changes.
            implied = loss / (1.0 + max(tail, 0.0))
            given_back = (implied - level) / (start - level) if progressed else None
            large = not signed and given_back is not None and given_back >= min_give_back
            # A spike while the last one is still being judged (the loss not back yet) is part of the same
            # disturbance: a switch to harder data, whose bad batches ride on a level the EMA has not caught up with.
            # One shortly after the learning rate rose is the schedule's (a warm restart), not the data's.
            scheduled = step - lr_rose_at <= settle_steps
            if track_size(state.rises) >= window and large and pending is None and not scheduled:
                onsets += (step,)  # (a window still filling has a loose tail: its onsets do not count)
            evidence = {"loss": loss, "recent_level": base, "rise": rise, "z": spike,
                        "progress_given_back": given_back,
                        "grad_norm": norm if finite(norm) else None,
                        "grad_norm_led": _led(step, grad_spike_step, state.norms, lead_steps, min_history),
                        "spikes_in_window": len(onsets)}
            if evidence["grad_norm_led"]:
                evidence["grad_spike_step"] = grad_spike_step
            if len(onsets) >= recurring and not repeating:
                repeating, pending = True, None
                found.append(_finding(step, Severity.WARNING, "repeated", evidence, step, recurring_window))
            elif pending is None and not repeating:
                pending = SpikeEpisode(step, level, tail, evidence, (), 0)
        new_state = LossSpikeState(track_push(state.rises, rise), level_ema, level_weight, norms, grad_spike_step,
                                   onsets, lag_ema, lag_weight, last, first, signed, pending, repeating, spike is not None,
                                   state.lr, lr_rose_at)
        return tuple(found), new_state

    return Detector("loss_spike", init, update, light=True)


def _judge(episode: SpikeEpisode, loss: float, step: int, min_rise: float, recovered_steps: int,
           settle_steps: int, learn_blocks: int, scheduled: bool) -> tuple[SpikeEpisode | None, Finding | None]:
    """The episode after one more loss, and its finding once it is judged (then the episode is None).
    ``scheduled``: the learning rate rose shortly before the onset or since, so a loss that stays up is the
    schedule's (a warm restart), not a shift."""
    band = episode.level + min_rise * abs(episode.level)
    back = episode.back + 1 if loss <= band else 0
    after = episode.after + (loss,)
    recovered = None, _finding(episode.onset, Severity.INFO, "recovered", episode.evidence, step, len(after))
    if back >= recovered_steps:
        return recovered
    if len(after) % settle_steps:  # judged at the end of each block of settle_steps losses
        return episode._replace(after=after, back=back), None
    first = statistics.median_high(after[:settle_steps])
    if len(after) == settle_steps:
        # A shift: the median loss since the spike sits above the band and above 90% of the single losses before it
        # (for independent noise, a median of 50 above its own q97.5 has a chance far below 1e-9).
        half = settle_steps // 2
        falling = statistics.median_high(after[half:]) <= RECOVERING * statistics.median_high(after[:half])
        if (first <= band or (first - episode.level) / abs(episode.level) <= episode.tail_rise or falling
                or scheduled):
            return recovered
        if first <= RECOVERING * episode.evidence["loss"]:  # down from the jump, slowly: judged on the next blocks
            return episode._replace(after=after, back=back), None
        settled = first
    else:
        settled = statistics.median_high(after[-settle_steps:])
        if settled <= band or settled <= RECOVERING * first:
            return recovered
        if len(after) < learn_blocks * settle_steps:
            return episode._replace(after=after, back=back), None
    evidence = {**episode.evidence, "settled_loss": settled}
    return None, _finding(episode.onset, Severity.WARNING, "level_shift", evidence, step, len(after))


def _led(step: int, grad_spike_step: int, norms: RobustTrack, lead_steps: int, min_history: int) -> bool | None:
    if grad_spike_step >= 0 and step - grad_spike_step <= lead_steps:
        return True
    return False if track_size(norms) >= min_history else None


def _finding(onset: int, severity: Severity, outcome: str, evidence: dict[str, Any], judged_at: int,
             span: int) -> Finding:
    evidence = {**evidence, "outcome": outcome, "judged_at": judged_at}
    led = evidence["grad_norm_led"]
    cause = {True: f"the gradient norm spiked first (step {evidence.get('grad_spike_step')})",
             False: "the gradient norm did not spike (a bad batch?)",
             None: "not enough gradient-norm history to tell whether it led"}[led]
    head = (f"loss {evidence['loss']:.4g} is {evidence['rise']:.0%} above its recent level "
            f"{evidence['recent_level']:.4g} (robust z {evidence['z']:.3g}); {cause}")
    if outcome == "recovered":
        message = f"isolated loss spike at step {onset}: {head}; the loss was back within {span} steps"
    elif outcome == "level_shift":
        message = (f"loss level shift at step {onset}: {head}; {span} steps later the loss still sits at "
                   f"{evidence['settled_loss']:.4g}")
    else:
        message = (f"repeated loss spikes: {evidence['spikes_in_window']} within {span} steps, each undoing at least "
                   f"half the progress since the start, at step {onset}: {head}")
    return Finding("loss_spike", severity, onset, None, evidence, message)


def _robust_z(track: RobustTrack, x: float, threshold: float) -> float:
    """Exact robust z of ``x``, computed only when the cached z clears half the threshold (else the cached z)."""
    cheap = track_z(track, x)
    if cheap < threshold / 2:
        return cheap
    median, scale = track_exact(track)
    return (x - median) / scale


def _tail_z(track: RobustTrack, x: float, threshold: float) -> tuple[float, float]:
    """Robust z of ``x`` whose scale is also at least what the window's upper tail implies: ``(q97.5 - median) /
    1.96`` (a normal's q97.5 is 1.96 sigma above its median, so on Gaussian noise this is the MAD's sigma).
    Minibatch losses are heavy-tailed (a batch of 4 with a mislabelled sample, a rare class in a batch of 8):
    their MAD sees only the bulk, and the tail would score z >= 6 every few steps. The MAD-only z bounds this one
    from above, so it screens the candidates. Returns (z, the window's q97.5; NaN when not computed)."""
    cheap = track_z(track, x)
    if cheap < threshold / 2:
        return cheap, math.nan
    median, scale = track_exact(track)
    upper = float(np.quantile(track_values(track), TAIL_QUANTILE))
    return (x - median) / max(scale, (upper - median) / TAIL_SIGMAS), upper
