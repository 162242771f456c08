"""``vanishing_gradient``: gradients (or updates) too small for a layer to learn.

Three rules on the sampled steps' per-tensor statistics (``stats.layers``), weight tensors only (see
``_read.kernels``), each with its source and default:

* **AUTOTRAINER** (Zhang et al., ICSE'21): ||G_first|| / ||G_last|| <= ``ratio`` (1e-3) and ||G_first|| <=
  ``first_norm`` (1e-4), from the first and last weight tensors. ``where`` is the first layer.
* **SageMaker Debugger's VanishingGradient**: mean |g| of a tensor < ``abs_mean`` (1e-7). A sparse gradient
  (an embedding whose rows the batch did not touch) is judged on its nonzero entries, using
  ``zero_grad_fraction``; an all-zero gradient is a dead or unused tensor, not a vanishing one, and is skipped.
* **Update ratio**: ||dW|| / ||W|| < ``update_ratio`` (1e-8), the far end of the ~1e-3 rule of thumb (Karpathy,
  "A Recipe for Training Neural Networks"). Judged only when the previous step's update was applied and its
  learning rate was at least ``lr_fraction`` (1%) of the largest seen, so a warm-up from 0 or a cosine decay to 0
  is not mistaken for vanishing.

The two absolute rules also flag a network that has converged: at a minimum the gradients are tiny because the
loss is (seed 002's calm phase, loss 1e-6 from 0.05). They are not judged while the smoothed loss (a robust EMA,
half-life 20 steps) is below ``converged`` (0.1%) of the first finite loss; the AUTOTRAINER ratio, which is
relative, still is. Above that but below ``learned`` (10%) of the first loss they are INFO (docs/severity.md): the
run has learned most of what it will, and small gradients are what its progress left (the corpus' fixed SRCNN,
SGD at 0.1: 0.25 -> 0.014 in 25 steps, then mean |g| 1e-8 in its first conv); the runs they harm stall near
their start (the corpus' sigmoid stacks: 86-100% of it).

``where`` names the earliest tensor (forward order) a rule holds for; ``evidence`` lists them all. A rule must
hold on ``patience`` (3) consecutive sampled steps to fire (WARNING, or INFO as above), so one odd batch does not;
an INFO escalates to a WARNING if the loss climbs back above ``learned``. It never
escalates to an ERROR: layers that do not learn harm the run, but it is not broken (docs/severity.md). Re-arms
after ``rearm_after`` (3) sampled steps on which no rule holds. Steps
without per-layer statistics or with non-finite gradients are skipped.

>>> from trainguard.core.stats import LayerStats, StepStats
>>> det = vanishing_gradient()
>>> state = det.init()
>>> layers = (LayerStats("fc1.weight", grad_norm=1e-9), LayerStats("fc2.weight", grad_norm=1e-2))
>>> for step in range(3):
...     found, state = det.update(StepStats(step=step, layers=layers), state)
>>> found[0].where, found[0].severity.name
('fc1.weight', 'WARNING')
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

from trainguard.core.detector import ARMED, Detector, Episode, episode_update
from trainguard.core.detectors._read import finite, kernels
from trainguard.core.detectors._smooth import robust_ema
from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import LayerStats, StepStats

__all__ = ["vanishing_gradient", "VanishingGradientState"]

RULES = ("autotrainer_ratio", "grad_abs_mean", "update_ratio")


class VanishingGradientState(NamedTuple):
    hits: tuple[int, int, int]  # consecutive sampled steps each rule (RULES order) has held
    peak_lr: float  # largest learning rate seen (0: none)
    prev_lr: float | None  # learning rate of the previous step (its update is what update_ratio measures)
    prev_applied: bool  # whether the previous step's update was applied
    start_loss: float  # the first finite loss (NaN: none yet)
    loss_ema: float  # robust EMA of the finite losses (see _smooth.robust_ema) ...
    loss_weight: float  # ... and its bias correction
    episode: Episode


def vanishing_gradient(ratio: float = 1e-3, first_norm: float = 1e-4, abs_mean: float = 1e-7,
                       update_ratio: float = 1e-8, lr_fraction: float = 0.01, converged: float = 1e-3,
                       learned: float = 0.1, patience: int = 3, rearm_after: int = 3) -> Detector:
    alpha = 1.0 - 0.5 ** (1.0 / 20.0)

    def init() -> VanishingGradientState:
        return VanishingGradientState((0, 0, 0), 0.0, None, True, math.nan, 0.0, 0.0, ARMED)

    def update(stats: StepStats, state: VanishingGradientState):
        lr = stats.lr if finite(stats.lr) else None
        peak_lr = max(state.peak_lr, lr) if lr is not None else state.peak_lr
        start_loss, loss_ema, loss_weight = state.start_loss, state.loss_ema, state.loss_weight
        if finite(stats.loss) and stats.loss_finite:
            if math.isnan(start_loss):
                start_loss = stats.loss
            loss_ema, loss_weight = robust_ema(loss_ema, loss_weight, stats.loss, alpha)
        carried = VanishingGradientState(state.hits, peak_lr, lr, stats.applied, start_loss, loss_ema, loss_weight,
                                         state.episode)
        if not stats.layers or not stats.grads_finite:
            return (), carried
        weights = kernels(stats.layers)
        smoothed = loss_ema / loss_weight if loss_weight > 0 else math.nan
        at_minimum = start_loss > 0 and smoothed <= converged * start_loss
        progressed = start_loss > 0 and smoothed <= learned * start_loss
        judge_updates = state.prev_applied and (state.prev_lr is None or state.prev_lr >= lr_fraction * peak_lr)
        held = (_autotrainer(weights, ratio, first_norm), [] if at_minimum else _small_abs_mean(weights, abs_mean),
                _small_updates(weights, update_ratio) if judge_updates and not at_minimum else [])
        hits = tuple(h + 1 if found else 0 for h, found in zip(state.hits, held))
        severity = None
        if max(hits) >= patience:  # the relative rule holds whatever the loss did; the absolute ones, per progress
            severity = Severity.INFO if progressed and hits[0] < patience else Severity.WARNING
        report, episode = episode_update(state.episode, severity, rearm_after)
        new_state = carried._replace(hits=hits, episode=episode)
        if not report:
            return (), new_state
        firing = [i for i, h in enumerate(hits) if h >= patience]
        rule = firing[0]
        where = held[rule][0][0].name
        evidence: dict[str, Any] = {"rule": RULES[rule], "rules": [RULES[i] for i in firing],
                                    "sampled_steps": hits[rule], "loss_to_start": smoothed / start_loss
                                    if start_loss > 0 else None}
        for i in firing:
            evidence[RULES[i]] = {layer.name: value for layer, value in held[i]}
        if 0 in firing:
            first, last = _first_last(weights)
            evidence.update(first_layer=first.name, last_layer=last.name, first_grad_norm=first.grad_norm,
                            last_grad_norm=last.grad_norm)
        message = (f"vanishing gradient at step {stats.step} in {where}: "
                   f"{_describe(RULES[rule], held[rule][0][1], ratio, first_norm, abs_mean, update_ratio)} "
                   f"on {hits[rule]} sampled steps in a row")
        return (Finding("vanishing_gradient", severity, stats.step, where, evidence, message),), new_state

    return Detector("vanishing_gradient", init, update)


def _first_last(weights: list[LayerStats]) -> tuple[LayerStats, LayerStats] | None:
    judged = [w for w in weights if finite(w.grad_norm)]
    if len(judged) < 2 or judged[-1].grad_norm <= 0:
        return None
    return judged[0], judged[-1]


def _autotrainer(weights: list[LayerStats], ratio: float, first_norm: float) -> list[tuple[LayerStats, float]]:
    pair = _first_last(weights)
    if pair is None:
        return []
    first, last = pair
    first_last = first.grad_norm / last.grad_norm
    return [(first, first_last)] if first_last <= ratio and first.grad_norm <= first_norm else []


def _small_abs_mean(weights: list[LayerStats], threshold: float) -> list[tuple[LayerStats, float]]:
    found = []
    for w in weights:
        if not finite(w.grad_abs_mean) or w.grad_abs_mean <= 0:
            continue  # unknown, or an all-zero gradient: dead or unused, not vanishing
        dense = 1.0 - w.zero_grad_fraction if finite(w.zero_grad_fraction) else 1.0
        if dense <= 0:
            continue
        mean_nonzero = w.grad_abs_mean / dense
        if mean_nonzero < threshold:
            found.append((w, mean_nonzero))
    return found


def _small_updates(weights: list[LayerStats], threshold: float) -> list[tuple[LayerStats, float]]:
    # A tensor whose gradient is exactly zero is dead or unused; its zero update says nothing about vanishing.
    return [(w, w.update_ratio) for w in weights
            if finite(w.update_ratio) and w.update_ratio < threshold and w.grad_norm != 0 and w.grad_abs_mean != 0]


def _describe(rule: str, value: float, ratio: float, first_norm: float, abs_mean: float, update_ratio: float) -> str:
    if rule == "autotrainer_ratio":
        return (f"||G_first|| / ||G_last|| = {value:.3g} (AUTOTRAINER: <= {ratio:g} with ||G_first|| <= "
                f"{first_norm:g})")
    if rule == "grad_abs_mean":
        return f"mean |g| = {value:.3g} (SageMaker Debugger: < {abs_mean:g})"
    return f"update ratio ||dW||/||W|| = {value:.3g} (< {update_ratio:g})"
