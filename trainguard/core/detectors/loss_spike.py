"""``loss_spike``: a loss far above its recent level, and whether the gradient norm spiked first.

Rule (OLMo's spike rule, z >= 6 over 128 steps; PaLM's rollback-and-skip): the loss's rise above its recent level
has a robust z-score >= ``z`` (6) against the rises of the last ``window`` (128) finite losses, after
``min_history`` (20) of them, and the loss is at least ``min_rise`` (30%) above that level. The recent level is a
short bias-corrected EMA (``level_halflife`` 8 steps, a lone spike capped at twice the level) and the rise is
``(loss - level) / |level|``. Judging rises rather than raw losses is ours: early in training the loss falls 2-3x
within 128 steps, which inflates a raw-loss MAD until a 4x spike scores z < 6. The 30% floor is ours too: in a
very quiet run a 10% bump is six MADs, yet no one calls it a spike.

``evidence["grad_norm_led"]`` says whether the global gradient norm was itself anomalous (robust z >= ``grad_z``
(4) against its own window) at the spike's step or up to ``lead_steps`` (3) steps before: True points at an
optimizer instability (a large update, then the loss), False at the data (a bad batch on a calm gradient),
None when there is not enough gradient-norm history to tell.

An isolated spike is a WARNING; the ``recurring``-th (3rd) spike within ``window`` steps is an ERROR (repeated
spikes are the instability OLMo and PaLM act on). One finding per spike; the detector re-arms after
``rearm_after`` (10) steps below the threshold. Non-finite losses are skipped (``non_finite`` reports them) and
never enter the window; a recent level of exactly 0 has no scale, and its step is not judged.

Per-step cost (~5 µs on one CPU core): two ``window.RobustTrack`` windows (rises, gradient norms), as in
``exploding_gradient``: cached medians refreshed every 16 steps, exact on a candidate step.

>>> from trainguard.core.stats import StepStats
>>> det = loss_spike()
>>> state = det.init()
>>> for step in range(40):
...     found, state = det.update(StepStats(step=step, loss=1.0 + 0.01 * (step % 3), grad_norm=1.0), state)
>>> found, state = det.update(StepStats(step=40, loss=5.0, grad_norm=1.0), state)
>>> found[0].severity.name, found[0].evidence["grad_norm_led"]
('WARNING', False)
"""
from __future__ import annotations

from typing import NamedTuple

from trainguard.core.detector import ARMED, Detector, Episode, episode_update
from trainguard.core.detectors._read import finite
from trainguard.core.detectors._smooth import robust_ema
from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import StepStats
from trainguard.core.window import RobustTrack, robust_track, track_exact, track_push, track_size, track_z

__all__ = ["loss_spike", "LossSpikeState"]


class LossSpikeState(NamedTuple):
    rises: RobustTrack  # (loss - level) / |level| of the last `window` finite losses
    level_ema: float  # the recent level: a robust EMA of the finite losses (see _smooth.robust_ema) ...
    level_weight: float  # ... with its bias correction
    norms: RobustTrack  # the last `window` finite global gradient norms
    grad_spike_step: int  # last step whose gradient norm was anomalous (-1: none)
    onsets: tuple[int, ...]  # steps of the spikes reported within the last `window` steps
    episode: Episode


def loss_spike(z: float = 6.0, window: int = 128, min_history: int = 20, min_rise: float = 0.3,
               level_halflife: float = 8.0, grad_z: float = 4.0, lead_steps: int = 3, recurring: int = 3,
               rearm_after: int = 10) -> Detector:
    alpha = 1.0 - 0.5 ** (1.0 / level_halflife)

    def init() -> LossSpikeState:
        return LossSpikeState(robust_track(window), 0.0, 0.0, robust_track(window), -1, (), ARMED)

    def update(stats: StepStats, state: LossSpikeState):
        step = stats.step
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
        level = state.level_ema / state.level_weight if state.level_weight > 0 else 0.0
        if level == 0.0:  # the first loss, or a level with no scale: nothing to judge against
            return (), state._replace(norms=norms, grad_spike_step=grad_spike_step, level_ema=level_ema,
                                      level_weight=level_weight)
        rise = (loss - level) / abs(level)
        spike = None
        if rise >= min_rise and track_size(state.rises) >= min_history:
            score = _robust_z(state.rises, rise, z)
            if score >= z:
                spike = score
        onsets = state.onsets
        if onsets and onsets[0] <= step - window:
            onsets = tuple(s for s in onsets if s > step - window)
        severity = None
        if spike is not None:
            severity = Severity.ERROR if len(onsets) + 1 >= recurring else Severity.WARNING
        report, episode = episode_update(state.episode, severity, rearm_after)
        if report:
            onsets += (step,)
        new_state = LossSpikeState(track_push(state.rises, rise), level_ema, level_weight, norms, grad_spike_step,
                                   onsets, episode)
        if not report:
            return (), new_state

        if grad_spike_step >= 0 and step - grad_spike_step <= lead_steps:
            led = True
        elif track_size(state.norms) >= min_history:
            led = False
        else:
            led = None
        evidence = {"loss": loss, "recent_level": level, "rise": rise, "z": spike,
                    "grad_norm": norm if finite(norm) else None, "grad_norm_led": led,
                    "spikes_in_window": len(onsets)}
        if led:
            evidence["grad_spike_step"] = grad_spike_step
        text = {True: f"the gradient norm spiked first (step {grad_spike_step})",
                False: "the gradient norm did not spike (a bad batch?)",
                None: "not enough gradient-norm history to tell whether it led"}[led]
        kind = f"{len(onsets)} spikes within {window} steps" if severity == Severity.ERROR else "loss spike"
        message = (f"{kind} at step {step}: loss {loss:.4g} is {rise:.0%} above its recent level {level:.4g} "
                   f"(robust z {spike:.3g}); {text}")
        return (Finding("loss_spike", severity, step, None, evidence, message),), new_state

    return Detector("loss_spike", init, update)


def _robust_z(track: RobustTrack, x: float, threshold: float) -> float:
    """Exact robust z of ``x``, computed only when the cached z clears half the threshold (else the cached z)."""
    cheap = track_z(track, x)
    if cheap < threshold / 2:
        return cheap
    median, scale = track_exact(track)
    return (x - median) / scale
