"""``unscaled_data``: inputs or regression targets far from unit scale, with training unstable from the start.

Evidence: the scale factor of the first batches' inputs and targets (``detectors.data_scale``: LeCun et al. 1998,
"Efficient BackProp": standardize to mean 0, variance 1), and the first loss against a trivial predictor's.

What separates it from its look-alikes:
- from ``lr_too_high`` and ``exploding_gradient``: the problem is there from the first step. *Large* inputs
  (root mean square >= 2) change the curvature the optimizer sees (E[x x^T] for the first layer), so a learning
  rate that is fine at unit scale diverges; with instability within the first ``early_steps`` (500) steps or 10%
  of the run they are the root cause (0.65 to 0.95, growing with log10 of the factor up to 100) and explain the
  explosion (seed 001, experiment 2: x in [0, 4], SGD 0.1). *Small* inputs (pixels in [0, 1]) lower the
  curvature: they never explain an explosion.
- Large *targets* (factor >= 10) make the loss and the output layer's gradients huge, which clipping bounds
  (seed 003: make_regression targets with std ~ 100s, fixed by gradient clipping in the seed): a contributing
  cause (0.5 to 0.65) next to the exploding gradient, which is the one to act on first.
- From logs without the data: a first loss orders of magnitude (>= 1e3x) above a trivial predictor's loss of
  standardized targets (``course.first_loss_scale``): 0.6, 0.65 with instability from the start; it explains the
  instability. An exploding gradient or a too-high learning rate starts from an ordinary loss. Where the guard
  measured the data on unit scale, the first loss separates nothing: a loss summed over the batch and the outputs
  (``reduction="sum"``: the pytorch/examples VAE starts at 7e4 on pixels in [0, 1]) is as far above a mean loss's
  trivial level. Inputs and targets both measured on scale: no evidence; inputs on scale, targets not measured:
  a candidate (0.4), not a confident cause.
- from ``bad_batch``: a scale problem is there from step 0; a bad batch is an isolated spike the loss recovers
  from.
- Without instability: a factor >= 10 and a loss that barely declines (the weights must grow by the targets'
  scale, or the first layer saturates under the inputs'), 0.6 to 0.9 (log10 of the factor from 10 to 1000); the
  scale then explains the saturated units, the collapsed output (vanishing gradients) and a lagging Adam it
  causes. With a loss that declines, no cause: nothing went wrong (the INFO ``data_scale`` finding notes it).
- Trouble that starts late is weighted 0.6x: the data's scale is there from the first step.
- from ``saturated_activation`` (the ``output_out_of_range`` finding): targets outside the range of the model's
  output sigmoid/tanh are out of reach whatever their scale; standardizing them would still leave half of them
  outside. Their scale, and the first loss they make, are then that cause's evidence, not this one's (the inputs'
  still count).
"""
from __future__ import annotations

import math

from trainguard.core.diagnosis.cause import Cause
from trainguard.core.diagnosis.rules._make import CANDIDATE, make_cause, strength
from trainguard.core.diagnosis.run_view import RunView
from trainguard.core.diagnosis.signals import data_scale_factors
from trainguard.core.findings import Severity

__all__ = ["unscaled_data"]

LARGE_INPUTS_RMS = 2.0
QUIET_FACTOR = 10.0  # also the targets' threshold


def unscaled_data(view: RunView, early_steps: int = 500) -> Cause | None:
    factors = data_scale_factors(view)
    unreachable = view.has("output_out_of_range", Severity.WARNING)
    if unreachable:
        # The targets lie outside the model's output sigmoid/tanh: their scale is saturated_activation's evidence
        # (a linear output, or the targets scaled into the range), and so is the first loss they make.
        factors = {which: info for which, info in factors.items() if which != "targets"}
    onset = view.first_unstable_step
    first_step = view.stats[0].step if view.stats else 0
    early = onset is not None and (onset - first_step <= early_steps or view.point_of(onset) <= len(view.stats) // 10)
    large_inputs = "inputs" in factors and _rms(factors["inputs"]) >= LARGE_INPUTS_RMS
    off = {which: info for which, info in factors.items() if info["scale_factor"] >= QUIET_FACTOR}
    if view.unstable and large_inputs:
        off["inputs"] = factors["inputs"]
    first_scale = view.first_loss_scale
    on_scale = {which for which in factors if which not in off}
    if first_scale and not off and (on_scale == {"inputs", "targets"} or (unreachable and "inputs" in on_scale)):
        first_scale = None  # the data measured on scale: the loss's own reduction, or the out-of-range targets
    if not off and first_scale is None:
        return None
    evidence: dict = {"off_scale": sorted(off) + (["first_loss"] if first_scale else []), **factors}
    if first_scale:
        evidence["first_loss_scale"] = first_scale
    if view.unstable:
        evidence["unstable_from_step"] = onset
    if view.unstable and large_inputs:
        evidence["separated_by"] = "inputs of a large scale from the first batch, instability from the start"
        confidence = 0.65 + 0.3 * strength(off["inputs"]["scale_factor"], 1.0, 100.0)
    elif first_scale:
        evidence["separated_by"] = "a first loss orders of magnitude above a trivial predictor's"
        confidence = 0.65 if view.unstable else 0.6
        if not off and "inputs" in on_scale:
            evidence["separated_by"] += "; the inputs measured on scale: off-scale targets or a summed loss"
            confidence = CANDIDATE
    elif view.unstable and "targets" in off:
        evidence["separated_by"] = "targets of a large scale from the first batch"
        confidence = 0.5 + 0.15 * strength(off["targets"]["scale_factor"], QUIET_FACTOR, 100.0)
    elif view.stalled and not view.unstable:
        evidence["separated_by"] = "data far from unit scale, and a loss that barely declines"
        confidence = 0.6 + 0.3 * strength(max(info["scale_factor"] for info in off.values()), QUIET_FACTOR, 1e3)
        # Inputs that far off push sigmoid/tanh units into their flat part and targets that far off leave the
        # output unable to follow: the saturation, the collapsed output and the stall are how it shows.
        evidence["explains_stall"] = True
    else:
        return None  # off scale in a run that trains well: the data_scale finding notes it, nothing went wrong
    if view.unstable and not early:
        confidence *= 0.6  # trouble that starts late is not explained by the data's scale alone
    # Large inputs or a huge first loss, with trouble from the start, explain the instability (EXPLAINS).
    evidence["explains_instability"] = bool(view.unstable and early and (large_inputs or first_scale))
    parts = [f"{which} scale {info['scale_factor']:.3g}x off (mean {info['mean']:.3g}, std {info['std']:.3g})"
             for which, info in sorted(off.items())]
    if first_scale:
        parts.append(f"first loss {first_scale['first_loss']:.3g}, {first_scale['orders_above']:.2g} orders of "
                     f"magnitude above a trivial predictor's")
    message = "data not standardized: " + "; ".join(parts)
    return make_cause(view, "unscaled_data", confidence, evidence, message)


def _rms(info: dict) -> float:
    return math.hypot(info["mean"], info["std"])
