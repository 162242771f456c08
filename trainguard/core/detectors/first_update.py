"""``first_update``: Adam's first update as large as the weights, and the loss rose after it.

Rule: with bias correction, Adam's first step is ``m1 / sqrt(v1) = sign(g)`` per element (Kingma & Ba 2015,
sec. 2-3): every weight moves by the learning rate itself, whatever the gradient's or the data's scale. The
update-to-weight ratio ``||dW|| / ||W||`` of that step therefore measures the learning rate against the weights'
own scale; about 1e-3 per step is healthy (Karpathy, CS231n "Neural Networks Part 3", 2016), and the healthy
corpus' largest first update is 0.1 (lr 2e-3 on GPT-2's initialization). The detector fires when the typical
weight tensor's ratio (median over the weight tensors; biases and tensors initialized at 0 left out) is >=
``min_ratio`` (1.0: the update as large as the weights, 10x the healthy corpus' largest) and the next ``after``
(3) losses rose above the first one (their median > ``rise`` (1.1) x the first loss, or one is non-finite):
the first step rewrote the initialization and made the model worse. That is harm, so WARNING
(docs/severity.md), from the fourth step on rather than at the end of the run; the diagnosis names the cause
(``lr_too_high``, docs/causes.md). The detector looks at the run's first step only and is idle afterwards.

Not when Adam's update RMS at that step is above ``SIGN_STEP_RMS`` (1.5): Adam bounds the first step's
``|m / (sqrt(v) + eps)|`` by 1, so far above it the second moment underflowed (float16, an epsilon too small:
``adam_epsilon``'s evidence) and the ratio says nothing of the learning rate.
"""
from __future__ import annotations

import math
import statistics
from typing import NamedTuple

from trainguard.core.detector import Detector
from trainguard.core.detectors._read import is_bias
from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import StepStats

__all__ = ["first_update", "FirstUpdateState", "adam_first_update_ratio", "weight_update_ratios", "SIGN_STEP_RMS"]

SIGN_STEP_RMS = 1.5


class FirstUpdateState(NamedTuple):
    first: dict | None  # the first step's measure (adam_first_update_ratio) while it may still fire
    losses_after: tuple[float, ...]
    done: bool


def weight_update_ratios(stats: StepStats, zero_initialized: frozenset[str] = frozenset()) -> list[float]:
    """The finite update-to-weight ratios of the weight tensors, leaving out biases (a bias starts at ~0, so its
    ratio says nothing of the step size: Karpathy's heuristic is for weights) and ``zero_initialized``."""
    return [l.update_ratio for l in stats.layers
            if l.update_ratio is not None and math.isfinite(l.update_ratio) and not is_bias(l.name)
            and l.name not in zero_initialized]


def adam_first_update_ratio(stats: StepStats, max_rms: float = SIGN_STEP_RMS) -> dict | None:
    """Adam's update against the weights at ``stats`` (meant for the run's first step): the typical weight
    tensor's update-to-weight ratio and the share of tensors at or above 1; None without Adam's statistics, when
    the step is non-finite, or when its update RMS (median over the tensors) is above ``max_rms``: an underflowed
    second moment."""
    if not stats.layers or not stats.finite:
        return None
    rms = [l.adam_update_rms for l in stats.layers
           if l.adam_update_rms is not None and math.isfinite(l.adam_update_rms)]
    if not rms or statistics.median(rms) > max_rms:
        return None
    zero = frozenset(l.name for l in stats.layers if l.weight_norm == 0.0)
    ratios = weight_update_ratios(stats, zero)
    if not ratios:
        return None
    return {"step": stats.step, "median_update_ratio": statistics.median(ratios),
            "share_at_least_weights": sum(r >= 1.0 for r in ratios) / len(ratios)}


def first_update(min_ratio: float = 1.0, after: int = 3, rise: float = 1.1) -> Detector:
    def init() -> FirstUpdateState:
        return FirstUpdateState(None, (), False)

    def update(stats: StepStats, state: FirstUpdateState):
        if state.done:
            return (), state
        if state.first is None:
            measured = adam_first_update_ratio(stats)
            if measured is None or measured["median_update_ratio"] < min_ratio or stats.loss is None \
                    or not math.isfinite(stats.loss) or stats.loss <= 0:
                return (), FirstUpdateState(None, (), True)
            return (), FirstUpdateState({**measured, "first_loss": float(stats.loss)}, (), False)
        loss = stats.loss if stats.loss is not None else math.nan
        losses = (*state.losses_after, float(loss))
        went_non_finite = not math.isfinite(loss)
        if not went_non_finite and len(losses) < after:
            return (), state._replace(losses_after=losses)
        first = state.first
        later = statistics.median(losses)
        if not (went_non_finite or later > rise * first["first_loss"]):
            return (), FirstUpdateState(None, (), True)
        ratio = first["median_update_ratio"]
        evidence = {**first, "losses_after": list(losses), "went_non_finite": went_non_finite}
        message = (f"Adam's first update moved the typical weight tensor by {ratio:.3g}x its norm (about 1e-3 "
                   f"is healthy) and the loss then " + ("went non-finite" if went_non_finite else
                                                        f"rose from {first['first_loss']:.3g} to {later:.3g}")
                   + ": the learning rate is as large as the weights")
        return (Finding("large_first_update", Severity.WARNING, stats.step, None, evidence, message),), \
            FirstUpdateState(None, (), True)

    return Detector("first_update", init, update)
