"""``lr_too_high`` and ``lr_too_low``, read from the update-to-weight ratio ||dW|| / ||W||.

Karpathy's heuristic (CS231n, "Neural Networks Part 3", 2016): the ratio should be around 1e-3 per layer; far
above it the learning rate is too high, far below it too low. Here:

- too high: training is unstable (divergence, non-finite values, loss spikes, an exploding gradient) and, before
  the trouble starts, the typical weight tensor's update ratio (median over tensors, then over the sampled
  steps) is >= 1e-2 (10x the heuristic). The median, not the largest: when gradients vanish, the last layer
  alone moves fast while the learning rate is fine for the rest. Without per-layer statistics, a divergence
  finding alone makes it a weak (0.35) suspect.
- too low: the loss stalled while every tensor's update ratio stayed <= 1e-5 (100x below the heuristic).
"""
from __future__ import annotations

from trainguard.core.diagnosis.cause import Cause
from trainguard.core.diagnosis.rules._make import make_cause, strength
from trainguard.core.diagnosis.run_view import RunView
from trainguard.core.diagnosis.signals import max_layer_update_ratio, median_update_ratio
from trainguard.core.findings import Severity

__all__ = ["lr_too_high", "lr_too_low"]

HIGH_RATIO = 1e-2
LOW_RATIO = 1e-5


def lr_too_high(view: RunView) -> Cause | None:
    if not view.unstable:
        return None
    onset = view.first_unstable_step
    typical = median_update_ratio(view, before=onset)
    lrs = sorted({s.lr for s in view.stats if s.lr is not None})
    evidence = {"unstable_from_step": onset, "median_update_ratio": typical,
                "max_update_ratio": max_layer_update_ratio(view, before=onset), "lrs": lrs[:4]}
    if typical is None:
        if not view.has("divergence", Severity.WARNING):
            return None
        return make_cause(view, "lr_too_high", 0.35, evidence,
                          f"the loss diverged from step {onset}; no per-layer update ratios were recorded")
    if typical < HIGH_RATIO:
        return None
    confidence = 0.45 + 0.3 * strength(typical, HIGH_RATIO, 1.0)
    message = (f"updates are {typical:.2g} of the weights per step before step {onset} "
               f"(about 1e-3 is healthy): the learning rate is too high")
    return make_cause(view, "lr_too_high", confidence, evidence, message)


def lr_too_low(view: RunView) -> Cause | None:
    if view.unstable or not view.stalled:
        return None
    largest = max_layer_update_ratio(view)
    if largest is None or largest > LOW_RATIO:
        return None
    confidence = 0.5 + 0.2 * strength(LOW_RATIO / max(largest, 1e-30), 1.0, 100.0)
    evidence = {"max_update_ratio": largest, "median_update_ratio": median_update_ratio(view),
                "lrs": sorted({s.lr for s in view.stats if s.lr is not None})[:4]}
    message = (f"the loss stalled while no tensor moved more than {largest:.2g} of its norm per step "
               f"(about 1e-3 is healthy): the learning rate is too low")
    return make_cause(view, "lr_too_low", confidence, evidence, message)
