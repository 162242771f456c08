"""``exploding_gradient``: the gradient norm far above its recent level, growing fast, or far larger in the first
layer than in the last.

Three rules, each cited with its default:

* **Robust outlier** (INFO: a brief gradient outlier, the run is fine) — the global gradient norm's robust z-score
  against the last ``window`` (128) finite norms is >= ``z`` (6) and the norm is >= ``min_ratio`` (5) times their
  median, after ``min_history`` (20) norms. Median/MAD as in OLMo's spike rule and ZClip (Kumar et al. 2025). The
  ratio floor is ours: minibatch noise is heavy-tailed, and seed 003's healthy twin reaches z = 8 at 3.1x its
  median without anything going wrong. A window whose median is 0 (a dead network) has no outliers.
* **Sustained growth** (WARNING: the run will be harmed) — the norm rose by >= ``step_rise`` (1.3x) on each of 2
  to ``growth_steps`` (4) consecutive steps and grew >= ``growth`` (10) times over them while the loss rose by
  >= ``loss_rise`` (25%; a GAN's gradients ramp up 12x from their initial level while its losses move 3%). This
  catches an explosion before a window of history exists (seed 003 rises 1.9x, 1.7x, 5.1x: fires at
  step 3, goes NaN at step 7). The gradient must also have grown at least as the square of the loss: in an
  unstable update the gradient runs ahead of the loss (seed 003: 16.7x against 1.9x), while new data (a
  curriculum switch, a rare class in a small batch) moves the loss as much as the gradient or more (a squared
  error grows as the square of its gradient). Once ``min_history`` norms are known the growth is measured from a
  robust baseline, the larger of the stretch's first norm and the window's median, not from a dip (near
  convergence a minibatch gradient norm can rise 10x from a dip back to its usual level: the healthy twin of the
  unscaled-data scenario), and the norm must be an outlier of the window's own tail: robust z >= ``z`` with the
  scale at least what the window's q97.5 implies (``(q97.5 - median) / 1.96``, as ``loss_spike`` does). A run
  whose norms are heavy-tailed reaches 12x in a few steps inside its usual range and recovers (the corpus' fixed
  deep ReLU twin of ``torch_aise16557_deep_sigmoid``: 0.94 -> 11.6, its window's largest 9.0, with a median of
  0.86). A stretch starts, at the earliest, at the first robust outlier of a run of outliers: one jump (a data
  shift) and a wiggle after it are not "sustained", while an explosion that keeps growing after its first outlier
  is. While the learning rate warms up (it rose during the stretch) the loss must also have risen as a level: the
  median of the stretch's losses >= (1 + ``loss_rise``) times the median of the ``window`` // 4 (32) losses before
  it. A growing step size grows the gradient norm of a healthy run while its loss keeps falling (a recurrent
  network's norm jumps and its noisy loss rises 25% across a few steps of its warm-up), where an update that has
  become unstable drives the loss up with it.
* **AUTOTRAINER ratio** (WARNING) — ||G_first|| / ||G_last|| >= ``ratio`` (70) on ``ratio_patience`` (2)
  consecutive sampled steps, from the first and last weight tensors of ``stats.layers`` (Zhang et al.,
  "AUTOTRAINER", ICSE'21, which decides on one check; two keep one odd batch from firing). ``where`` is the first
  layer.

For the first two rules, when the step carries per-layer statistics, ``where`` names the weight tensor whose
gradient norm grew most since the last sampled step before the rise (``evidence["layer_growth"]``).

A run that clips its own gradients (``stats.clip_max_norm``, e.g. ``Guard(clip=...)``; ``grad_norm`` is then the
norm before clipping) is judged on the same rules, with the cap in the evidence (``clip_max_norm``, ``clipped``:
the norm was above it) and the message: an outlier the clip contained is the INFO it always is, never more
(clipping the occasional outlier is what the clip is for: Pascanu et al. 2013), while a sustained growth still
warns, because the clip bounds each update but not the instability that keeps pushing the norm up.

The detector never raises an ERROR: a broken run shows it as ``non_finite`` or ``divergence`` (docs/severity.md).
One finding per episode, and one more if an INFO escalates to a WARNING; the detector re-arms after
``rearm_after`` (25) steps on which no rule holds. Steps with a non-finite gradient norm are skipped (that is
``non_finite``'s finding) and never enter the window.

Per-step cost (~4 µs on one CPU core, 12% of it the loss and LR history of the warm-up check; ~8 µs on steps with
per-layer statistics): the new norm waits in a short tuple and the z-score is taken against a cached median/scale
(``window.RobustTrack``); the window is merged and its median/MAD recomputed with ``np.partition`` every 16 steps
(~7 µs), and exactly on the rare steps whose cached z is above half the threshold, so a stale median never decides
a finding.

>>> from trainguard.core.stats import StepStats
>>> det = exploding_gradient()
>>> state = det.init()
>>> for step, (loss, norm) in enumerate([(27133, 637), (17524, 1228), (17790, 2086), (50819, 10624)]):
...     found, state = det.update(StepStats(step=step, loss=loss, grad_norm=norm), state)
>>> found[0].step, found[0].severity.name, found[0].evidence["rule"]
(3, 'WARNING', 'sustained_growth')
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from trainguard.core.detector import ARMED, Detector, Episode, episode_update
from trainguard.core.detectors._read import finite, kernels
from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import StepStats
from trainguard.core.window import (RobustTrack, robust_track, track_exact, track_push, track_size, track_values,
                                    track_z)

__all__ = ["exploding_gradient", "ExplodingGradientState"]


class ExplodingGradientState(NamedTuple):
    norms: RobustTrack  # the last `window` finite global gradient norms
    recent: tuple[tuple[float, float], ...]  # (grad norm, loss) of the last growth_steps + 1 steps; loss NaN if unknown
    rises: int  # consecutive steps, since the latest jump, on which the gradient norm rose by >= step_rise
    was_outlier: bool  # whether the previous step's norm was a robust outlier
    ratio_hits: int  # consecutive sampled steps with ||G_first|| / ||G_last|| >= ratio
    baseline: tuple[tuple[str, float], ...]  # weight-tensor gradient norms at the last sampled step before a rise
    losses: tuple[float, ...]  # the last window // 4 + growth_steps + 1 finite losses
    lr: float | None  # the previous step's learning rate
    lr_rose_at: int  # the last step whose learning rate was above the one before (-inf: never)
    episode: Episode


def exploding_gradient(z: float = 6.0, min_ratio: float = 5.0, window: int = 128, min_history: int = 20,
                       growth: float = 10.0, growth_steps: int = 4, step_rise: float = 1.3, ratio: float = 70.0,
                       ratio_patience: int = 2, rearm_after: int = 25,
                       loss_rise: float = 0.25) -> Detector:
    loss_level = window // 4  # losses before a stretch that make the level a warm-up's stretch is judged against

    def init() -> ExplodingGradientState:
        return ExplodingGradientState(robust_track(window), (), 0, False, 0, (), (), None, -(10 ** 18), ARMED)

    def update(stats: StepStats, state: ExplodingGradientState):
        norm = stats.grad_norm
        lr = stats.lrs[0] if stats.lrs else state.lr  # a NaN learning rate never compares as a rise
        lr_rose_at = stats.step if (state.lr is not None and lr > state.lr) else state.lr_rose_at
        if not finite(norm) or not stats.grads_finite:
            return (), state._replace(lr=lr, lr_rose_at=lr_rose_at)
        loss = stats.loss if finite(stats.loss) and stats.loss_finite else math.nan
        losses = state.losses if math.isnan(loss) else (state.losses + (loss,))[-(loss_level + growth_steps + 1):]
        outlier = _outlier(state.norms, norm, z, min_ratio, min_history)
        rising = bool(state.recent) and norm >= step_rise * state.recent[-1][0]
        rises = state.rises + 1 if rising else 0
        recent = (state.recent + ((norm, loss),))[-(growth_steps + 1):]
        baseline_norm = None  # the window's median, once there is a window, for a stretch long enough to judge
        if rises >= 2 and track_size(state.norms) >= min_history:
            baseline_norm = track_exact(state.norms)[0]
        grown = _growth(recent, min(rises, growth_steps), growth, loss_rise, baseline_norm)
        if grown is not None and baseline_norm is not None and _tail_z(state.norms, norm) < z:
            grown = None  # within the upper tail of the run's own norms: not an explosion
        if grown is not None and stats.step - lr_rose_at <= grown[1] and not _loss_level_rose(losses, grown[1],
                                                                                               loss_rise):
            grown = None  # the learning rate warms up and the loss keeps falling
        ratio_hits, first_last = _ratio(stats, state.ratio_hits, ratio) if stats.layers else (state.ratio_hits, None)
        severity = None
        if grown is not None or ratio_hits >= ratio_patience:
            severity = Severity.WARNING
        elif outlier is not None:
            severity = Severity.INFO
        report, episode = episode_update(state.episode, severity, rearm_after)
        baseline = state.baseline
        sampled = _kernel_norms(stats) if stats.layers else ()
        if sampled and severity is None and episode.reported == 0 and (not rising or not baseline):
            baseline = sampled
        # A stretch of growth starts, at the earliest, at the first outlier of a run of outliers: a jump (a data
        # shift, a bad batch) and the ordinary wiggle after it are not a sustained growth.
        jumped = outlier is not None and not state.was_outlier
        new_state = ExplodingGradientState(track_push(state.norms, norm), recent, 0 if jumped else rises,
                                           outlier is not None, ratio_hits, baseline, losses, lr, lr_rose_at, episode)
        if not report:
            return (), new_state

        evidence: dict[str, Any] = {"grad_norm": norm}
        if stats.clip_max_norm is not None:
            evidence.update(clip_max_norm=stats.clip_max_norm, clipped=norm > stats.clip_max_norm)
        rules = []
        if grown is not None:
            factor, steps, start_norm, start_loss = grown
            rules.append("sustained_growth")
            evidence.update(growth=factor, rising_steps=steps, start_grad_norm=start_norm)
            if not math.isnan(loss) and not math.isnan(start_loss):
                evidence.update(loss=loss, start_loss=start_loss)
        if outlier is not None:
            rules.append("robust_z")
            evidence.update(z=outlier[0], median=outlier[1], ratio_to_median=norm / outlier[1])
        if ratio_hits >= ratio_patience:
            rules.append("autotrainer_ratio")
            first, last = first_last
            evidence.update(first_last_ratio=first.grad_norm / last.grad_norm, ratio_threshold=ratio,
                            first_layer=first.name, last_layer=last.name, first_grad_norm=first.grad_norm,
                            last_grad_norm=last.grad_norm)
        evidence.update(rule=rules[0], rules=rules)
        where = None
        if rules[0] == "autotrainer_ratio":
            where = evidence["first_layer"]
        elif sampled and state.baseline:
            layer_growth = _layer_growth(state.baseline, sampled)
            if layer_growth:
                evidence["layer_growth"] = layer_growth
                where = max(layer_growth, key=layer_growth.get)
        return (Finding("exploding_gradient", severity, stats.step, where, evidence,
                        _message(stats.step, evidence, where)),), new_state

    return Detector("exploding_gradient", init, update)


def _outlier(norms: RobustTrack, norm: float, z: float, min_ratio: float,
             min_history: int) -> tuple[float, float] | None:
    """(z, median) when ``norm`` is a robust outlier of the window, else None."""
    if track_size(norms) < min_history or track_z(norms, norm) < z / 2:  # cheap, possibly stale bound
        return None
    median, scale = track_exact(norms)
    if median <= 0:  # most recent gradients are exactly zero (a dead network): no level to be an outlier of
        return None
    score = (norm - median) / scale
    if score >= z and norm >= min_ratio * median:
        return score, median
    return None


def _growth(recent: tuple[tuple[float, float], ...], rises: int, growth: float, loss_rise: float,
            baseline: float | None) -> tuple[float, int, float, float] | None:
    """(factor, steps, start norm, start loss) of the longest rising stretch of >= 2 steps, ending now, that grew
    >= ``growth`` times from the larger of its first norm and ``baseline`` (the window's median; None: no window
    yet) while the loss rose by >= ``loss_rise``, and grew at least as the square of the loss's growth (an unknown
    loss does not veto)."""
    norm, loss = recent[-1]
    for steps in range(rises, 1, -1):
        start_norm, start_loss = recent[-1 - steps]
        start_norm = max(start_norm, baseline or 0.0)
        if start_norm > 0 and norm >= growth * start_norm and not loss < start_loss + loss_rise * abs(start_loss):
            factor = norm / start_norm
            if factor < _loss_growth(start_loss, loss) ** 2:
                continue  # the loss jumped with the gradient: new data, not an unstable update
            return factor, steps, start_norm, start_loss
    return None


def _tail_z(norms: RobustTrack, norm: float) -> float:
    """Robust z of ``norm`` with the scale at least what the window's upper tail implies, ``(q97.5 - median) /
    1.96`` (a normal's q97.5 is 1.96 sigma above its median): gradient norms are heavy-tailed, and the MAD sees only
    their bulk."""
    median, scale = track_exact(norms)
    upper = float(np.quantile(track_values(norms), 0.975))
    return (norm - median) / max(scale, (upper - median) / 1.96)


def _loss_level_rose(losses: tuple[float, ...], steps: int, loss_rise: float) -> bool:
    """Whether the median of the last ``steps`` + 1 losses is >= (1 + ``loss_rise``) times the median of the losses
    before them (True when there are none before: no level to have fallen from)."""
    stretch, before = losses[-(steps + 1):], losses[:-(steps + 1)]
    if not before:
        return True
    level = float(np.median(before))
    return float(np.median(stretch)) >= level + loss_rise * abs(level)


def _loss_growth(start: float, now: float) -> float:
    """How many times the loss grew (1 when either is unknown or the start is negative, which has no scale); from a
    loss of exactly 0, any rise is infinite."""
    if math.isnan(start) or math.isnan(now) or now <= start or start < 0:
        return 1.0
    return now / start if start > 0 else math.inf


def _ratio(stats: StepStats, hits: int, threshold: float):
    """The AUTOTRAINER hit count after this sampled step, and the (first, last) weight tensors it was judged on."""
    weights = [layer for layer in kernels(stats.layers) if finite(layer.grad_norm)]
    if len(weights) < 2 or weights[-1].grad_norm <= 0:
        return hits, None
    first, last = weights[0], weights[-1]
    return (hits + 1 if first.grad_norm / last.grad_norm >= threshold else 0), (first, last)


def _kernel_norms(stats: StepStats) -> tuple[tuple[str, float], ...]:
    return tuple((layer.name, layer.grad_norm) for layer in kernels(stats.layers) if finite(layer.grad_norm))


def _layer_growth(baseline: tuple[tuple[str, float], ...],
                  now: tuple[tuple[str, float], ...]) -> dict[str, float]:
    before = dict(baseline)
    return {name: norm / before[name] for name, norm in now if before.get(name, 0.0) > 0}


def _message(step: int, ev: dict[str, Any], where: str | None) -> str:
    rule = ev["rule"]
    if rule == "sustained_growth":
        text = (f"gradient norm {ev['grad_norm']:.3g} grew {ev['growth']:.3g}x over {ev['rising_steps']} rising "
                f"steps")
        if "loss" in ev:
            text += f" while the loss rose ({ev['start_loss']:.3g} -> {ev['loss']:.3g})"
    elif rule == "robust_z":
        text = (f"gradient norm {ev['grad_norm']:.3g} is {ev['ratio_to_median']:.3g}x its rolling median "
                f"{ev['median']:.3g} (robust z {ev['z']:.3g})")
    else:
        text = (f"gradient norm of the first layer {ev['first_layer']} is {ev['first_last_ratio']:.3g}x that of the "
                f"last layer {ev['last_layer']} (AUTOTRAINER: >= {ev['ratio_threshold']:g})")
    if where and rule != "autotrainer_ratio":
        text += f"; largest growth in {where} ({ev['layer_growth'][where]:.3g}x)"
    if ev.get("clipped"):
        text += f" (clipped to {ev['clip_max_norm']:.3g} by the run)"
    return f"exploding gradient at step {step}: {text}"
