"""``divergence``: the loss climbing back up, far above the best it reached, and not coming back down.

Two rules on positive losses (a loss that can go negative, as a policy gradient's or an ELBO's, has no scale to
be "far above": once a loss <= 0 is seen the detector stops judging the run):

* **Diverged** (ERROR: the run is broken) — the loss is above ``factor`` (10) times the best smoothed loss and
  above the starting (first finite) loss, and either it climbed there (it rose >= sqrt(``factor``) times on each
  of the last ``patience`` (3) steps, each time to a new high of the last ``level_window`` (25) losses: seed 003,
  or a learning rate 100x too high, 3.8 -> 15 -> 60 -> 200; new data jumps in one step) or it has stayed there
  ``sustain`` (100) steps with its recent level (the median of the last ``level_window`` (25) losses) still above
  half of its peak since: the run has lost everything it learned and is not getting it back. The shape of
  AUTOTRAINER's and TensorFlow's divergence checks (loss above a multiple of its minimum), made robust to a
  change of data (a curriculum switch, a new task: the loss jumps, then falls again) by asking that it keep
  growing or not recover.
* **Rising** (WARNING: the run is being harmed) — the recent level is at least ``rise_factor`` (2) times the best
  smoothed loss, has given back at least ``regress`` (25%) of the progress from the start to the best, and has
  stayed within 10% of its peak since the rise began, on ``rise_patience`` (50) consecutive steps. For a run that
  had learned (its best at most ``learned`` (half) of its start), ``learned_rise_factor`` (1.5) times its best is
  enough: the corpus' GPT-2 at lr 0.1 (``hf_gpt2_lr_climb``) fell 4.0 -> 1.5, then climbed back to 2.6 at a
  constant learning rate and got nothing at 2x. Without that progress a rise is a GAN's (its generator's loss climbs
  1.6x from its start, its discriminator's gives back 85% of a 27% progress); no DEV healthy run or fixed twin that
  had halved its loss met the rule even at 1.1x. The second
  condition keeps a converged run quiet (a loss that went 2.3 -> 0.001 and wobbles to 0.003 has tripled but given
  back 0.1% of its progress); the third a shift the run recovers from. Steps within ``rise_patience`` of a rise
  of the learning rate are not counted: a warm-up, a OneCycle ramp or a warm restart (SGDR) raises the loss on
  purpose, and the run is judged once the learning rate stops rising.
* **Far above its start** (WARNING) — the recent level has been at least ``factor`` (10) times the starting loss
  on ``sustain`` (100) consecutive steps: for that long the model has been far worse than at its initialization,
  whatever it does next (the corpus' GPT-2 at learning rate 2: 4 -> 140 -> ~570, then down to ~12 over 300 steps
  as the learning rate decays, halving from its peak, so not "stuck"). No healthy run of the corpus' DEV part
  held a level above 1.0x its start for 50 steps; a curriculum switch's jump is relative to the level it left,
  far below the start, and is learned down within tens of steps.

The best smoothed loss is the lowest value of a bias-corrected exponential moving average (as Adam's moments)
with a ``halflife`` of 10 steps, fed with the loss capped at twice the current average so that a lone spike
barely moves it. One finding per episode, one more on escalation from WARNING to ERROR; re-arms after
``rearm_after`` (50) steps on which neither rule holds. Non-finite losses are skipped (``non_finite`` reports
them).

>>> from trainguard.core.stats import StepStats
>>> det = divergence()
>>> state = det.init()
>>> losses = [1.0] * 5 + [0.5] * 20 + [20.0, 300.0, 9000.0]
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
    recent: tuple[float, ...]  # the last `level_window` finite losses
    far_losses: tuple[float, ...]  # the losses of the current stretch meeting "far above", oldest first
    far_peak: float  # highest recent level during that stretch
    rising_steps: int  # consecutive steps meeting the "rising" rule
    rise_peak: float  # highest recent level during that stretch
    above_start_steps: int  # consecutive steps with the recent level >= factor x the starting loss
    above_start_reported: bool  # a finding was reported since the loss went that far above the start
    lr: float | None  # the previous step's learning rate
    lr_rose_at: int  # the last step whose learning rate was above the one before (-inf: never)
    judged: bool  # False once a loss <= 0 was seen: the loss has no scale
    episode: Episode


def divergence(factor: float = 10.0, patience: int = 3, sustain: int = 100, rise_factor: float = 2.0,
               learned_rise_factor: float = 1.5, learned: float = 0.5,
               regress: float = 0.25, rise_patience: int = 50, halflife: float = 10.0, level_window: int = 25,
               rearm_after: int = 50) -> Detector:
    alpha = 1.0 - 0.5 ** (1.0 / halflife)

    def init() -> DivergenceState:
        return DivergenceState(math.nan, 0.0, 0.0, math.inf, (), (), 0.0, 0, 0.0, 0, False, None, -(10 ** 18), True, ARMED)

    def update(stats: StepStats, state: DivergenceState):
        loss = stats.loss
        lr = stats.lr if finite(stats.lr) else None
        lr_rose_at = stats.step if (lr is not None and state.lr is not None and lr > state.lr) else state.lr_rose_at
        if not finite(loss) or not stats.loss_finite or not state.judged:
            return (), state._replace(lr=lr if lr is not None else state.lr, lr_rose_at=lr_rose_at)
        if loss <= 0:
            return (), state._replace(judged=False, lr=lr, lr_rose_at=lr_rose_at)
        start = loss if math.isnan(state.start) else state.start
        best = state.best
        ema, ema_weight = robust_ema(state.ema, state.ema_weight, loss, alpha)
        smooth = ema / ema_weight
        recent = (state.recent + (loss,))[-level_window:]
        level = sorted(recent)[len(recent) // 2]
        far_losses, far_peak, rising_steps, rise_peak = (), 0.0, 0, 0.0
        severity = None
        above_start_steps = state.above_start_steps + 1 if level >= factor * start else 0
        far_above = max(loss, level) >= factor * start  # the loss leads, its recent level follows
        above_start_reported = state.above_start_reported and far_above
        if above_start_steps >= sustain and not above_start_reported:  # not again after a divergence it reported
            severity = Severity.WARNING
        if 0 < best < math.inf:
            if loss > factor * best and loss > start:
                far_losses = (state.far_losses + (loss,))[-(sustain + 1):]
                far_peak = max(state.far_peak, level)
                exploding = _climbing(recent, patience, factor ** 0.5)
                stuck = len(far_losses) > sustain and level >= 0.5 * far_peak
                if exploding or stuck:
                    severity = Severity.ERROR
            schedule_rising = stats.step - lr_rose_at < rise_patience
            risen = level >= (learned_rise_factor if best <= learned * start else rise_factor) * best
            if (risen and level - best >= regress * (start - best) and not schedule_rising
                    and level >= 0.9 * max(state.rise_peak, level)):
                rising_steps, rise_peak = state.rising_steps + 1, max(state.rise_peak, level)
                if severity is None and rising_steps >= rise_patience:
                    severity = Severity.WARNING
        report, episode = episode_update(state.episode, severity, rearm_after)
        new_state = DivergenceState(start, ema, ema_weight, min(best, smooth), recent, far_losses, far_peak,
                                    rising_steps, rise_peak, above_start_steps,
                                    above_start_reported or (report and far_above), lr, lr_rose_at, True,
                                    episode)
        if not report:
            return (), new_state
        given_back = (level - best) / (start - best) if start > best else None
        far_above_start = severity == Severity.WARNING and rising_steps < rise_patience
        rule = "diverged" if severity == Severity.ERROR else "far_above_start" if far_above_start else "rising"
        evidence = {"rule": rule, "loss": loss,
                    "recent_level": level, "smoothed_loss": smooth, "best_smoothed_loss": best, "start_loss": start,
                    "ratio_to_best": loss / best, "progress_given_back": given_back,
                    "steps": {"diverged": len(far_losses), "far_above_start": above_start_steps}.get(rule, rising_steps)}
        if severity == Severity.ERROR:
            how = ("climbing" if len(far_losses) <= sustain
                   else "without coming back down")
            message = (f"divergence at step {stats.step}: loss {loss:.4g} is {loss / best:.3g}x its best "
                       f"{best:.4g} and above the starting loss {start:.4g} for {len(far_losses)} steps, {how}")
        elif far_above_start:
            message = (f"loss far above its start at step {stats.step}: its recent level {level:.4g} has been at "
                       f">= {factor:g}x the starting loss {start:.4g} for {above_start_steps} steps")
        else:
            message = (f"loss rising at step {stats.step}: its recent level {level:.4g} is {level / best:.3g}x "
                       f"its best {best:.4g} after {rising_steps} steps of rising")
            if given_back is not None:
                message += f", giving back {given_back:.0%} of the progress since the start"
        return (Finding("divergence", severity, stats.step, None, evidence, message),), new_state

    return Detector("divergence", init, update, light=True)


def _climbing(recent: tuple[float, ...], steps: int, big: float) -> bool:
    """Whether the loss rose >= ``big`` times on each of the last ``steps`` steps, each time to a new high of
    ``recent``: a climb (seed 003: 44x, 7000x, 6.5e12x; a learning rate 100x too high: 3.9x, 4x, 3.3x), not one jump
    (new data: 500x, then 1.03x) nor a jump with bad batches around it. A bad batch 4.3x the level, new data 10x above
    it, then a bad batch 4.8x above that rose >= 3.2x three times in a row in two of 1,200 heavy-tailed healthy
    streams; their first bad batch was no new high (the window held earlier bad batches as high), while a real
    climb keeps setting new highs even when it starts from a dip (the corpus' torch_facerec_lr01_nan: 22, 4.8, 49,
    2929, 8.6e14)."""
    last = recent[-(steps + 1):]
    if len(last) < steps + 1 or not last[0] > 0:
        return False
    return all(b >= big * a for a, b in zip(last, last[1:])) and all(
        recent[i] > max(recent[:i]) for i in range(len(recent) - steps, len(recent)))
