"""``lr_too_high`` and ``lr_too_low``, read from the update-to-weight ratio ||dW|| / ||W|| and the LR itself.

Karpathy's heuristic (CS231n, "Neural Networks Part 3", 2016): the ratio should be around 1e-3 per layer; far
above it the learning rate is too high, far below it too low.

Too high. What separates it from its look-alikes:
- from ``exploding_gradient`` and ``unscaled_data``: *every* layer moves too far. Before the trouble, the typical
  weight tensor's ratio (median over tensors, then over the sampled steps) is >= 1e-2 (10x the heuristic) and so
  is the ratio of at least half the tensors (over at least 3 sampled steps, or one whose updates were larger than
  the weights), and the data is not off scale (large inputs or targets, or a first
  loss orders of magnitude above a trivial predictor's, make every gradient and update large at any LR), and
  the gradients are not themselves far larger than the weights (||g|| / ||W|| >= 100: the updates are large
  because the gradient exploded, Pascanu et al. 2013), and the trouble did not begin at a cliff (a one-step
  jump of the gradient norm >= 100x after calm points, ``signals.gradient_cliff``: the same updates ran calmly
  until then, as a recurrent LM's do at SGD lr 20 with clipping). One layer far ahead of the others is a problem of that layer (large
  inputs move the first layer, vanishing gradients leave all but the last one still). Confidence 0.6 to 0.85
  with instability or a stall; 0.5 without either when the typical ratio is >= 0.1 (the loss may still fall, but
  each step rewrites a tenth of the weights).
- Adam's first update as large as the weights (the typical weight tensor's update-to-weight ratio at the run's
  first step >= 1, ``signals.adam_first_update``): with bias correction that step is +-lr per element whatever
  the data's or the gradient's scale (Kingma & Ba 2015), so it measures the learning rate against the weights
  alone, and it separates the LR from unscaled data and exploding gradients. 0.6 to 0.85 (with the ratio up to
  100) when the run is troubled or the loss rose after that first step, 0.5 otherwise. The healthy corpus' largest
  is 0.1. Adam's first step is left out of the typical ratios above (it is larger than any later one).
- the LR rose into the trouble (a warm-up or a schedule peak just before the instability): 0.65 (Cohen et al.
  2021: past the stability edge gradient descent oscillates and diverges).
- the loss oscillates (the doctor's ``oscillation`` finding) or climbed back and stayed up, with no update ratios
  recorded and no LR rise: the usual suspect, not a separated one (0.5; 0.4 when the doctor saw a long calm
  phase at that LR first). Recorded ratios that are not large across the layers speak against the learning
  rate: no cause then.
- a jumpy loss (point-to-point noise > 5%) that never got 10% below its first value, with no update ratios
  recorded: steps that overshoot (0.5), when its points are correlated (the model moves the loss). Uncorrelated
  points (lag-1 autocorrelation within 3/sqrt(n) of 0, ``course.constant_output_like``) are a constant output's
  scatter over random batches (a regression batch's MSE scatters by ~sqrt(2 / batch) of itself): a candidate (0.4)
  next to dead units and vanishing gradients.
- with no update ratios recorded, a loss that improved only as the schedule lowered the LR
  (``course.progress_as_lr_decays``: the LR >= 2x lower in the second half, where the log-loss fell >= 1.5x more
  than in the first): 0.5. A quiet one is a constant output: dead units, vanishing gradients.

Too low: the weights barely move (every weight tensor's ratio <= 1e-4, 10x below the heuristic, median over the
sampled steps of the largest) while the loss declines slowly (the last 5 losses above 0.7x the first 5) or not
at all: 0.6 to 0.8 (growing as the ratio falls to 1e-6). From logs without
per-layer statistics, a logged LR <= 1e-6 with such a loss: 0.6; a loss that falls slowly, steadily and
linearly (``course.linear_decline``; CS231n: "with low learning rates the improvements will be linear") on data
of unit scale: 0.5, the usual cause without a measure of the step. A quiet loss that never moved from its first
value, at no trivial predictor's level, under a logged LR <= 1e-4: 0.5, the usual cause. Dead, vanishing or
saturated hidden units leave the output layer its full gradient (it sits after them), so at a working LR the
loss still falls from its initial level to the trivial predictor's (the class priors: Mosbach et al. 2021 find
failed BERT fine-tunings stuck there, with vanishing gradients); a loss that did not move even that far moved no
parameter, and the logged LR is small. A loss stuck from the start with neither measured is a candidate (0.4)
among the causes of a stall (dead units, vanishing gradients, saturation).
"""
from __future__ import annotations

import numpy as np

from trainguard.core.diagnosis.cause import Cause
from trainguard.core.diagnosis import course
from trainguard.core.diagnosis.course import column_change
from trainguard.core.diagnosis.rules._make import CANDIDATE, make_cause, strength
from trainguard.core.diagnosis.run_view import RunView
from trainguard.core.diagnosis.signals import (adam_first_update, data_off_scale, gradient_cliff,
                                               max_layer_update_ratio, update_ratio_spread)
from trainguard.core.findings import Severity

__all__ = ["lr_too_high", "lr_too_low", "lr_rise_before"]

HIGH_RATIO = 1e-2
HUGE_RATIO = 1e-1
ALL_LAYERS_SHARE = 0.5
LOW_RATIO = 1e-4
TINY_LR = 1e-6
SMALL_LR = 1e-4  # 100x below SGD's usual 1e-2 (Bengio 2012), the low end of Adam's range
LR_RISE = 1.2
MIN_SAMPLES = 2
HUGE_GRADIENT = 100.0  # ||g|| / ||W||: the gradient, not the learning rate, makes the updates large
FIRST_UPDATE_RATIO = 1.0  # 10x the largest Adam first update of the healthy corpus (0.1: lr 2e-3 on GPT-2's init)


def lr_rise_before(view: RunView, step: int | None) -> float | None:
    """The logged LR just before ``step`` over the LR of the stretch before that (None without an LR)."""
    if step is None or not np.isfinite(view.lrs).any():
        return None
    at = view.point_of(step)
    return column_change(view.lrs, at, max(2, len(view.lrs) // 20))


def lr_too_high(view: RunView) -> Cause | None:
    onset = view.first_unstable_step
    oscillating = view.has("oscillation", Severity.WARNING)
    troubled = view.unstable or view.stalled or oscillating
    spread = update_ratio_spread(view, before=onset, large=HIGH_RATIO)
    # An LR rise counts before trouble that lasts (a climb, a divergence, a NaN), not before a spike the run
    # recovered from: warm-ups raise the LR while isolated bad batches come and go.
    lasting = view.climb or view.has("divergence", Severity.WARNING) or view.nonfinite_steps
    rise = lr_rise_before(view, onset) if lasting else None
    evidence: dict = {"unstable_from_step": onset, "oscillating": oscillating,
                      "lrs": sorted({float(x) for x in view.lrs[np.isfinite(view.lrs)]})[:4]}
    if spread is not None:
        evidence.update(spread)
    if rise is not None:
        evidence["lr_rise_before_trouble"] = round(rise, 3)
    # At least MIN_SAMPLES sampled steps (Adam's first update, +-lr per element, is not among them: it is
    # ``adam_first_update``'s evidence), unless the one update was larger than the weights themselves.
    all_layers = (spread is not None and spread["median_update_ratio"] >= HIGH_RATIO
                  and spread["share_of_layers_large"] >= ALL_LAYERS_SHARE
                  and (spread["samples"] >= MIN_SAMPLES or spread["median_update_ratio"] >= 1.0))
    # Data far from unit scale makes the gradients, and so every update, large at any learning rate.
    off_scale = data_off_scale(view)
    if off_scale:
        evidence["data_off_scale"] = off_scale
    huge_gradients = spread is not None and (spread["median_grad_to_weight"] or 0.0) >= HUGE_GRADIENT
    first = adam_first_update(view)
    if first is not None and first["median_update_ratio"] >= FIRST_UPDATE_RATIO:
        rose = view.has("large_first_update")  # detectors.first_update: the next losses rose above the first
        evidence.update(adam_first_update=first, loss_rose_after_first_update=rose,
                        separated_by="Adam's first update, the learning rate per weight whatever the data or the "
                                     "gradient, as large as the weights")
        ratio = first["median_update_ratio"]
        confidence = 0.6 + 0.25 * strength(ratio, FIRST_UPDATE_RATIO, 100.0) if (troubled or rose) else 0.5
        message = (f"Adam's first update moved the typical weight tensor by {ratio:.2g}x its norm"
                   + (" and the loss rose after it" if rose else "") + ": the learning rate is as large as the "
                   "weights themselves (about 1e-3 of them per step is healthy)")
        return make_cause(view, "lr_too_high", confidence, evidence, message)
    if all_layers and (troubled or spread["median_update_ratio"] >= HUGE_RATIO):
        typical = spread["median_update_ratio"]
        # The same updates ran calmly until a one-step cliff: they did not make the run unstable (an exploding
        # gradient's signature, rules.gradients), so they do not separate the learning rate.
        cliff = gradient_cliff(view)
        if cliff is not None:
            evidence["gradient_cliff"] = cliff
        if not off_scale and not huge_gradients and cliff is None:
            evidence["separated_by"] = "update-to-weight ratios large across the layers, not in one layer"
        confidence = 0.6 + 0.25 * strength(typical, HIGH_RATIO, 1.0) if troubled else 0.5
        message = (f"updates are {typical:.2g} of the weights per step in most layers"
                   f"{f' before step {onset}' if onset is not None else ''} (about 1e-3 is healthy): the learning "
                   f"rate is too high")
        return make_cause(view, "lr_too_high", confidence, evidence, message)
    oscillation_rise = next((f.evidence.get("lr_ratio") for f in view.of("oscillation", Severity.WARNING)
                             if f.evidence.get("lr_rising")), None)
    if rise is None and oscillation_rise is not None:
        rise = float(oscillation_rise)
        evidence["lr_rise_before_trouble"] = round(rise, 3)
    if rise is not None and rise >= LR_RISE:
        evidence["separated_by"] = "the learning rate rose into the instability"
        message = f"the learning rate rose {rise:.3g}x just before the trouble at step {onset}: it is too high there"
        return make_cause(view, "lr_too_high", 0.65, evidence, message)
    decayed = course.progress_as_lr_decays(view.losses, view.lrs) if spread is None else None
    if decayed is not None:
        evidence["progress_as_lr_decays"] = decayed
        message = (f"the loss improved only as the schedule lowered the learning rate ({decayed['lr_fall']:.3g}x "
                   f"lower in the second half, where the log-loss fell {decayed['late_log_fall']:.2g} against "
                   f"{decayed['early_log_fall']:.2g} before): the learning rate was too high for it")
        return make_cause(view, "lr_too_high", 0.5, evidence, message)
    # The doctor's ``large_lr`` (a Trainer log, AdamW by default, at an LR >= 2.5x a transformer's initial weights)
    # with little progress: the usual suspect, the optimizer being assumed rather than measured.
    large_lr = next((f for f in view.of("large_lr", Severity.WARNING)), None)
    if large_lr is not None and spread is None:
        evidence["large_lr"] = dict(large_lr.evidence)
        return make_cause(view, "lr_too_high", 0.5, evidence, large_lr.message)
    jumpy_stall = view.stall is not None and not view.stall["quiet"] and view.stall["never_improved"]
    if jumpy_stall and spread is None:
        evidence["stall"] = view.stall
        if course.constant_output_like(view.stall):
            message = (f"the loss scatters around {view.stall['stalled_at']:.3g} and never got below its first value "
                       f"({view.stall['first_loss']:.3g}), its points uncorrelated like a constant output's over "
                       f"random batches; a learning rate too high is one candidate")
            return make_cause(view, "lr_too_high", CANDIDATE, evidence, message)
        message = (f"the loss jumps around {view.stall['stalled_at']:.3g} and never got below its first value "
                   f"({view.stall['first_loss']:.3g}): steps that overshoot, a learning rate too high, are the "
                   f"usual cause")
        return make_cause(view, "lr_too_high", 0.5, evidence, message)
    if not (view.unstable and (view.climb or view.has("divergence", Severity.WARNING))) and not oscillating:
        return None
    if spread is not None:
        return None  # the updates were measured and are not large across the layers: evidence against the LR
    what = "the loss oscillates" if oscillating else f"the loss climbed back from step {onset} and stayed up"
    # The same LR served a long calm phase before the trouble: weaker evidence against it.
    calm_first = any(f.evidence.get("calm") for f in view.findings if f.code in ("divergence", "non_finite"))
    if calm_first:
        evidence["calm_before"] = True
    return make_cause(view, "lr_too_high", 0.4 if calm_first else 0.5, evidence,
                      f"{what}: a learning rate too high is the usual cause")


def lr_too_low(view: RunView) -> Cause | None:
    if view.unstable:
        return None
    losses = view.losses[np.isfinite(view.losses)]
    slow = len(losses) >= 10 and float(np.median(losses[-5:])) >= 0.7 * float(np.median(losses[:5]))
    if not (slow or view.stalled):
        return None
    largest = max_layer_update_ratio(view)
    lrs = view.lrs[np.isfinite(view.lrs)]
    lr = float(np.median(lrs)) if len(lrs) else None
    evidence: dict = {"max_update_ratio": largest, "median_lr": lr, "stalled": view.stalled}
    if largest is not None and largest <= LOW_RATIO:
        evidence["separated_by"] = "every layer's update-to-weight ratio is tiny"
        confidence = 0.6 + 0.2 * strength(LOW_RATIO / max(largest, 1e-30), 1.0, 100.0)
        message = (f"the loss barely declines while no tensor moved more than {largest:.2g} of its norm per step "
                   f"(about 1e-3 is healthy): the learning rate is too low")
        return make_cause(view, "lr_too_low", confidence, evidence, message)
    if largest is None and lr is not None and lr <= TINY_LR:
        evidence["separated_by"] = "the logged learning rate is tiny"
        message = f"the loss barely declines at a learning rate of {lr:.2g}: it is too low"
        return make_cause(view, "lr_too_low", 0.6, evidence, message)
    linear = course.linear_decline(view.losses) if largest is None and slow else None
    if linear is not None and not data_off_scale(view):
        evidence["linear_decline"] = linear
        message = (f"the loss falls steadily and linearly ({linear['first_level']:.3g} -> {linear['last_level']:.3g}), "
                   f"the second half as fast as the first, far from converging: steps too small to get anywhere, "
                   f"a learning rate too low is the usual cause")
        return make_cause(view, "lr_too_low", 0.5, evidence, message)
    stall = view.stall
    unmoved = (stall is not None and stall["quiet"] and stall["never_improved"] and "trivial_predictor" not in stall)
    if unmoved and largest is None and lr is not None and lr <= SMALL_LR and not data_off_scale(view):
        message = (f"the loss never moved from its first value ({stall['first_loss']:.3g} -> {stall['stalled_at']:.3g}),"
                   f" not even to a trivial predictor's level, at a learning rate of {lr:.2g}: steps too small to "
                   f"move even the output layer, a learning rate too low is the usual cause")
        return make_cause(view, "lr_too_low", 0.5, {**evidence, "stall": stall}, message)
    if stall and course.constant_output_like(stall) and largest is None and (lr is None or lr <= SMALL_LR):
        message = "the loss is stuck from the start; a learning rate too low is one candidate"
        return make_cause(view, "lr_too_low", CANDIDATE, {**evidence, "stall": view.stall}, message)
    return None
