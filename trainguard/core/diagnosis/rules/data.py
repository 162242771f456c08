"""``unscaled_data``: inputs or regression targets far from unit scale, with training unstable from the start.

Evidence: the scale factor of the first batches' inputs and targets (``detectors.data_scale``: LeCun et al. 1998,
"Efficient BackProp": standardize to mean 0, variance 1). With instability (non-finite values, an exploding
gradient, divergence, loss spikes), inputs count from a factor of 2 (the curvature grows with its square) and
targets from 10 (the gradient grows with it); without instability, only a factor >= 10 is worth a note.

Inputs and targets weigh differently:
- Unscaled *inputs* change the curvature the optimizer sees (E[x x^T] for the first layer), so a learning rate
  that is fine at unit scale diverges; clipping only slows that down. With instability early in the run
  (before ``early_steps``), unscaled inputs are the root cause (seed 001, experiment 2: x in [0, 4], SGD 0.1).
- Unscaled *targets* make the loss and the output layer's gradients huge, which clipping bounds (seed 003:
  make_regression targets with std ~ 100s, fixed by gradient clipping in the seed). The exploding gradient is
  then the cause to act on first, and the targets' scale is reported as a contributing cause.
"""
from __future__ import annotations

from trainguard.core.diagnosis.cause import Cause
from trainguard.core.diagnosis.rules._make import make_cause, strength
from trainguard.core.diagnosis.run_view import RunView
from trainguard.core.diagnosis.signals import data_scale_factors

__all__ = ["unscaled_data"]

UNSTABLE_INPUTS_FACTOR = 2.0
QUIET_FACTOR = 10.0  # also the targets' threshold


def unscaled_data(view: RunView, early_steps: int = 500) -> Cause | None:
    factors = data_scale_factors(view)
    thresholds = {"inputs": UNSTABLE_INPUTS_FACTOR if view.unstable else QUIET_FACTOR, "targets": QUIET_FACTOR}
    off = {which: info for which, info in factors.items() if info["scale_factor"] >= thresholds[which]}
    if not off:
        return None
    worst = max(info["scale_factor"] for info in off.values())
    evidence = {"off_scale": sorted(off), **factors}
    if not view.unstable:
        confidence = 0.3 + 0.2 * strength(worst, QUIET_FACTOR, 1e3)
    else:
        onset = view.first_unstable_step
        evidence["unstable_from_step"] = onset
        if "inputs" in off:
            confidence = 0.65 + 0.3 * strength(off["inputs"]["scale_factor"], 1.0, 100.0)
        else:
            confidence = 0.5 + 0.15 * strength(off["targets"]["scale_factor"], QUIET_FACTOR, 100.0)
        first_step = view.stats[0].step if view.stats else 0
        if onset is not None and onset - first_step > early_steps:
            confidence *= 0.6  # trouble that starts late is not explained by the data's scale alone
    parts = [f"{which} scale {info['scale_factor']:.3g}x off (mean {info['mean']:.3g}, std {info['std']:.3g})"
             for which, info in sorted(off.items())]
    message = "data not standardized: " + "; ".join(parts)
    return make_cause(view, "unscaled_data", confidence, evidence, message)
