"""``loss_spike``: a loss far above its recent level, and whether the gradient norm spiked first.

Rule (OLMo 2's spike handling; PaLM's rollback-and-skip): the loss's robust z-score against the last ``window``
(128) finite losses is >= ``z`` (6), after ``min_history`` (20) losses, and the loss is at least ``min_rise``
(30%) of |median| above the median. The floor is ours: in a very quiet run a 10% bump is six MADs, yet no one
calls it a spike.

``evidence["grad_norm_led"]`` says whether the global gradient norm was itself anomalous (robust z >= ``grad_z``
(4) against its own window) at the spike's step or up to ``lead_steps`` (3) steps before: True points at an
optimizer instability (a large update, then the loss), False at the data (a bad batch on a calm gradient),
None when there is not enough gradient-norm history to tell.

An isolated spike is a WARNING; the ``recurring``-th (3rd) spike within ``window`` steps is an ERROR (repeated
spikes are the instability OLMo and PaLM act on). One finding per spike; the detector re-arms after
``rearm_after`` (10) steps below the threshold. Non-finite losses are skipped (``non_finite`` reports them) and
never enter the window.

Per-step cost (~5 µs on one CPU core): two ``window.RobustTrack`` windows (loss, gradient norm), as in
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
from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import StepStats
from trainguard.core.window import RobustTrack, robust_track, track_exact, track_push, track_size, track_z

__all__ = ["loss_spike", "LossSpikeState"]


class LossSpikeState(NamedTuple):
    losses: RobustTrack  # the last `window` finite losses
    norms: RobustTrack  # the last `window` finite global gradient norms
    grad_spike_step: int  # last step whose gradient norm was anomalous (-1: none)
    onsets: tuple[int, ...]  # steps of the spikes reported within the last `window` steps
    episode: Episode


def loss_spike(z: float = 6.0, window: int = 128, min_history: int = 20, min_rise: float = 0.3,
               grad_z: float = 4.0, lead_steps: int = 3, recurring: int = 3, rearm_after: int = 10) -> Detector:
    def init() -> LossSpikeState:
        return LossSpikeState(robust_track(window), robust_track(window), -1, (), ARMED)

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

        spike = None
        if track_size(state.losses) >= min_history and _robust_z(state.losses, loss, z) >= z:
            median, scale = track_exact(state.losses)
            if loss - median >= min_rise * abs(median):
                spike = (loss - median) / scale, median
        onsets = state.onsets
        if onsets and onsets[0] <= step - window:
            onsets = tuple(s for s in onsets if s > step - window)
        severity = None
        if spike is not None:
            severity = Severity.ERROR if len(onsets) + 1 >= recurring else Severity.WARNING
        report, episode = episode_update(state.episode, severity, rearm_after)
        if report:
            onsets += (step,)
        new_state = LossSpikeState(track_push(state.losses, loss), norms, grad_spike_step, onsets, episode)
        if not report:
            return (), new_state

        score, median = spike
        if grad_spike_step >= 0 and step - grad_spike_step <= lead_steps:
            led = True
        elif track_size(state.norms) >= min_history:
            led = False
        else:
            led = None
        evidence = {"loss": loss, "median": median, "z": score,
                    "ratio_to_median": loss / median if median > 0 else None,
                    "grad_norm": norm if finite(norm) else None, "grad_norm_led": led,
                    "spikes_in_window": len(onsets)}
        if led:
            evidence["grad_spike_step"] = grad_spike_step
        text = {True: f"the gradient norm spiked first (step {grad_spike_step})",
                False: "the gradient norm did not spike (a bad batch?)",
                None: "not enough gradient-norm history to tell whether it led"}[led]
        kind = f"{len(onsets)} spikes within {window} steps" if severity == Severity.ERROR else "loss spike"
        message = (f"{kind} at step {step}: loss {loss:.4g} vs rolling median {median:.4g} "
                   f"(robust z {score:.3g}); {text}")
        return (Finding("loss_spike", severity, step, None, evidence, message),), new_state

    return Detector("loss_spike", init, update)


def _robust_z(track: RobustTrack, x: float, threshold: float) -> float:
    """Exact robust z of ``x``, computed only when the cached z clears half the threshold (else the cached z)."""
    cheap = track_z(track, x)
    if cheap < threshold / 2:
        return cheap
    median, scale = track_exact(track)
    return (x - median) / scale
