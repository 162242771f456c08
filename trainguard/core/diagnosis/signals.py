"""Numbers the rules share, computed from the statistics (each a small pure function of a RunView)."""
from __future__ import annotations

import math

import numpy as np

from trainguard.core.detectors.activation_health import output_activation
from trainguard.core.detectors.data_scale import scale_factor
from trainguard.core.detectors.first_update import SIGN_STEP_RMS, adam_first_update_ratio
from trainguard.core.detectors._read import is_bias as _is_bias
from trainguard.core.detectors.first_update import weight_update_ratios as _weight_update_ratios
from trainguard.core.diagnosis.course import recovery
from trainguard.core.diagnosis.run_view import RunView
from trainguard.core.findings import Finding
from trainguard.core.stats import StepStats

__all__ = ["data_scale_factors", "adam_first_update", "first_loss_on_unit_data", "data_off_scale",
           "median_update_ratio", "max_layer_update_ratio", "update_ratio_spread", "gradient_growth",
           "gradient_cliff", "run_up_to_non_finite", "first_last_gradient_ratio", "zero_gradient_layers",
           "activations_sampled", "saturation_in_a_deep_stack", "blow_up_after_calm"]


def data_scale_factors(view: RunView) -> dict[str, dict]:
    """For "inputs" and "targets": the largest scale factor over the recorded first batches, with its summary."""
    out: dict[str, dict] = {}
    for s in view.stats:
        for which, summary in (("inputs", s.inputs), ("targets", s.targets)):
            if summary is None:
                continue
            factor = scale_factor(summary)
            if factor is not None and factor > out.get(which, {}).get("scale_factor", 0.0):
                out[which] = {"scale_factor": round(factor, 4), "mean": summary.mean, "std": summary.std,
                              "abs_max": summary.abs_max, "step": s.step}
    return out



def _adam_rms(s: StepStats) -> float:
    """The median over the tensors of Adam's update RMS (m / (sqrt(v) + eps)) at this step; 0 without Adam."""
    rms = [l.adam_update_rms for l in s.layers if l.adam_update_rms is not None and math.isfinite(l.adam_update_rms)]
    return float(np.median(rms)) if rms else 0.0


def _adam(s: StepStats) -> bool:
    return any(l.adam_update_rms is not None for l in s.layers)


def adam_first_update(view: RunView) -> dict | None:
    """Adam's first update against the weights, when the run's first step was sampled: the typical weight
    tensor's update-to-weight ratio and the share of tensors at or above 1 (``detectors.first_update``: with bias
    correction, Adam's first step moves every weight by the learning rate itself, whatever the gradient's scale,
    so the ratio measures the learning rate against the weights' own scale alone)."""
    return adam_first_update_ratio(view.stats[0]) if view.stats else None


def _update_ratios_by_step(view: RunView, before: int | None) -> list[list[float]]:
    rows = []
    first_step = view.stats[0].step if view.stats else None
    for s in view.sampled:
        if before is not None and s.step >= before:
            break
        if s.step == first_step and _adam(s) and len(view.sampled) > 1:
            continue  # Adam's first step is +-lr per element whatever the gradient (adam_first_update)
        if _adam_rms(s) > SIGN_STEP_RMS:
            continue  # an update inflated by an underflowed second moment says nothing of the learning rate
        ratios = _weight_update_ratios(s, view.zero_initialized)
        if ratios:
            rows.append(ratios)
    return rows


def median_update_ratio(view: RunView, before: int | None = None) -> float | None:
    """Median over the sampled steps (before ``before``) of the median per-tensor update-to-weight ratio."""
    rows = _update_ratios_by_step(view, before)
    return float(np.median([np.median(r) for r in rows])) if rows else None


def max_layer_update_ratio(view: RunView, before: int | None = None) -> float | None:
    """Median over the sampled steps of the largest per-tensor update-to-weight ratio."""
    rows = _update_ratios_by_step(view, before)
    return float(np.median([max(r) for r in rows])) if rows else None


def first_loss_on_unit_data(view: RunView, unit: float = 10.0) -> dict | None:
    """The run's first loss, computed before any update, against a trivial predictor's (the targets' second
    moment, at least 1), when both the inputs and the targets were measured within ``unit`` (10x) of unit scale.
    No learning rate acts on that loss; with the data at unit scale, a first loss far above the trivial level
    comes from the network itself amplifying its input (an initialization or a recurrence with gain > 1)."""
    factors = data_scale_factors(view)
    if any(which not in factors or factors[which]["scale_factor"] >= unit for which in ("inputs", "targets")):
        return None
    first = view.losses[0] if len(view.losses) else math.nan
    if not math.isfinite(first):
        return None
    reference = max(1.0, view.targets_second_moment or 1.0)
    return {"first_loss": float(first), "trivial_reference": reference, "first_over_trivial": float(first) / reference}


def data_off_scale(view: RunView) -> list[str]:
    """What makes the gradients large through the data's scale: inputs or targets with a root mean square >= 10,
    or a first loss orders of magnitude above a trivial predictor's."""
    large = [which for which, info in data_scale_factors(view).items() if math.hypot(info["mean"], info["std"]) >= 10]
    return large + (["first_loss"] if view.first_loss_scale else [])


def update_ratio_spread(view: RunView, before: int | None = None, large: float = 1e-2) -> dict | None:
    """How the update-to-weight ratios spread over the weight tensors (median over the sampled steps before
    ``before``): the typical (median) tensor's ratio, the share of tensors at or above ``large``, and the largest
    over the typical one. A learning rate too high moves every layer too far; a problem of one layer (the first
    layer under large inputs, the last one when the others get no gradient) moves that layer alone."""
    rows = _update_ratios_by_step(view, before)
    if not rows:
        return None
    medians = [float(np.median(r)) for r in rows]
    # ||g|| / ||W|| of the weight tensors: a gradient far larger than the weights it updates is a gradient
    # problem whatever the learning rate (Pascanu et al. 2013).
    grad_to_weight = [float(np.median(g)) for s in view.sampled if before is None or s.step < before
                      if (g := [l.grad_norm / l.weight_norm for l in s.layers if not _is_bias(l.name)
                                and l.grad_norm is not None and l.weight_norm and math.isfinite(l.grad_norm)
                                and math.isfinite(l.weight_norm)])]
    return {"median_update_ratio": float(np.median(medians)),
            "share_of_layers_large": float(np.median([np.mean(np.asarray(r) >= large) for r in rows])),
            "largest_over_median": float(np.median([max(r) / m for r, m in zip(rows, medians) if m > 0]
                                                   or [float("nan")])),
            "median_grad_to_weight": float(np.median(grad_to_weight)) if grad_to_weight else None,
            "samples": len(rows)}


def zero_gradient_layers(view: RunView, share: float = 0.9) -> dict[str, float]:
    """Weight tensors whose fraction of exactly-zero gradient entries was >= ``share`` (median over the sampled
    steps): the incoming weights of dead ReLU units get exactly zero gradient, vanishing ones tiny but non-zero.
    The share is high because a healthy ReLU network's tensors, over a small batch, can have half their entries
    at zero (units that happened to be off for every sample)."""
    fractions: dict[str, list[float]] = {}
    for s in view.sampled:
        for l in s.layers:
            if l.zero_grad_fraction is not None and math.isfinite(l.zero_grad_fraction) and not _is_bias(l.name):
                fractions.setdefault(l.name, []).append(l.zero_grad_fraction)
    return {name: float(np.median(v)) for name, v in fractions.items() if float(np.median(v)) >= share}


def saturation_in_a_deep_stack(view: RunView, depth: int = 3) -> bool:
    """At the last sampled step, the network has >= ``depth`` hidden sigmoid/tanh layers and fewer than half of
    them are saturated (> 50% of their inputs in the flat part): its gradient fades through the whole stack
    (the sigmoid's slope is at most 0.25 even unsaturated), a saturated layer is one place where it shows."""
    for s in reversed(view.stats):
        if not s.activations:
            continue
        output = output_activation(s.activations)
        stack = [a for a in s.activations if a.kind in ("sigmoid", "tanh") and a.name != output]
        saturated = [a for a in stack if a.saturated_fraction is not None and a.saturated_fraction > 0.5]
        return len(stack) >= depth and 2 * len(saturated) < len(stack)
    return False


def activations_sampled(view: RunView) -> bool:
    """Whether the run recorded activation statistics of its hidden layers (not just its output)."""
    return any(a.kind != "output" for s in view.stats for a in s.activations)


def gradient_growth(view: RunView) -> dict | None:
    """How far the global gradient norm grew: its largest finite value over its initial level, the median of
    its first 10 finite values before the run turned unstable (an explosion in the first steps must not raise
    its own baseline)."""
    norms = view.grad_norms
    finite = np.isfinite(norms)
    if finite.sum() < 3:
        return None
    onset = view.first_unstable_step
    calm = finite & (view.steps < onset) if onset is not None else finite
    first = norms[calm if calm.any() else finite][:10]
    base = float(np.median(first))
    if base <= 0:
        return None
    peak_index = int(np.nanargmax(np.where(finite, norms, -np.inf)))
    return {"growth": float(norms[peak_index] / base), "initial_grad_norm": base,
            "peak_grad_norm": float(norms[peak_index]), "peak_step": int(view.steps[peak_index])}


CLIFF_JUMP = 100.0
CALM_RUN_UP = 3.0
CALM_POINTS = 10


def gradient_cliff(view: RunView, window: int = 20) -> dict | None:
    """The run's trouble began at a cliff: at the first sign of instability (or up to 2 points before it) the
    gradient norm jumped in one point to >= ``CLIFF_JUMP`` (100) times its median over the up to ``window``
    points before, which were calm (at least ``CALM_POINTS``, none above ``CALM_RUN_UP`` (3) times that median).
    Pascanu, Mikolov & Bengio (2013, sec. 3) describe the exploding gradient of recurrent networks this way: the
    loss surface has steep walls, and a step onto one catapults the parameters; the steps before it were
    ordinary. Only a cliff the run did not come back from counts (non-finite within 10 steps, or a loss that
    stayed up): a one-step outlier that recovered is a bad batch's. A learning rate too high instead grows the
    instability step by step (|1 - lr * curvature| per step on a quadratic), a run-up the calm window rules out."""
    onset = view.first_unstable_step
    if onset is None:
        return None
    at = view.point_of(onset)
    norms = view.grad_norms
    for i in range(max(0, at - 2), min(at + 1, len(norms))):  # a finding's step may lie past the last step
        if not math.isfinite(norms[i]):
            continue
        before = norms[max(0, i - window):i]
        before = before[np.isfinite(before)]
        if len(before) < CALM_POINTS:
            continue
        level = float(np.median(before))
        if not (level > 0 and norms[i] >= CLIFF_JUMP * level and float(before.max()) < CALM_RUN_UP * level):
            continue
        step = int(view.steps[i])
        back = recovery(view.losses, i)
        if not any(step <= t <= step + 10 for t in view.nonfinite_steps) and (back is None or back["recovered"]):
            return None  # a one-step outlier the run came back from: a batch's gradient, not a blow-up
        first = norms[np.isfinite(norms)][:10]
        return {"step": step, "grad_norm": float(norms[i]), "level_before": level,
                "jump": float(norms[i] / level), "calm_points": len(before),
                "level_over_initial": level / float(np.median(first))}
    return None


def blow_up_after_calm(view: RunView) -> Finding | None:
    """The doctor's first non-finite loss or abrupt divergence after a long calm phase (its ``calm`` evidence,
    ``doctor.analysis.causes.calm_shrinking_phase``) in a log without gradient norms (no ``shrinking`` key):
    nothing then tells what broke the calm, a lagging Adam second moment or a cliff of the loss surface."""
    for f in view.findings:
        if (f.code in ("divergence", "non_finite") and f.evidence.get("calm") and "shrinking" not in f.evidence
                and (f.code == "non_finite" or f.evidence.get("abrupt"))):
            return f
    return None


def run_up_to_non_finite(view: RunView, points: int = 3, rise: float = 10.0) -> dict | None:
    """The gradient norm rose at each of the (at least ``points``) finite points before the first non-finite
    gradient, by >= ``rise`` (10x) over them: the blow-up of an explosion, which an LR too high produces as
    well (nothing here separates the two)."""
    first = next((s for s in view.stats if not s.grads_finite), None)
    if first is None:
        return None
    at = view.point_of(first.step)
    norms = view.grad_norms[:at][-points:]
    if len(norms) < points or not np.isfinite(norms).all() or norms[0] <= 0 or not (np.diff(norms) > 0).all():
        return None
    if norms[-1] < rise * norms[0]:
        return None
    return {"non_finite_step": first.step, "grad_norms_before": [float(n) for n in norms],
            "run_up": float(norms[-1] / norms[0])}


def first_last_gradient_ratio(view: RunView) -> dict | None:
    """AUTOTRAINER's ||G_first|| / ||G_last||: gradient norm of the first weight tensor over the last one's
    (forward order), median over the sampled steps. Tiny when gradients vanish toward the input."""
    ratios, first_name, last_name = [], None, None
    for s in view.sampled:
        layers = [l for l in s.layers if l.grad_norm is not None and math.isfinite(l.grad_norm)]
        weights = [l for l in layers if not _is_bias(l.name)] or layers
        if len(weights) < 2 or weights[-1].grad_norm == 0:
            continue
        ratios.append(weights[0].grad_norm / weights[-1].grad_norm)
        first_name, last_name = weights[0].name, weights[-1].name
    if not ratios:
        return None
    return {"ratio": float(np.median(ratios)), "first": first_name, "last": last_name, "samples": len(ratios)}
