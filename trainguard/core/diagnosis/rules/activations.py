"""``dead_relu`` and ``saturated_activation``, from the ``activation_health`` findings and the gradients.

SageMaker Debugger's ``DeadRelu`` and ``SaturatedActivation`` rules flag a layer with more than 50% dead or
saturated units. What separates them from each other and from vanishing gradients is measured, not inferred:
the activation statistics themselves (a unit that never fires; an input in the flat part of a sigmoid/tanh).
With such a finding: 0.6 when training went unstable, 0.75 when the loss stalled (the dead or saturated layer
then explains it). In a run whose loss neither stalled nor went unstable, a hidden layer's WARNING counts only when
it persists: the layer was at or past the finding's threshold (95% of its ReLU units dead, more than half of its
sigmoid/tanh inputs saturated) on at least ``PERSISTS`` (half) of its finite samples. Such units are capacity the
run lost and learn slowly if at all, though the loss still falls through the rest (Glorot & Bengio 2010 on
saturated top hidden units that slow learning; LeCun et al. 1998, "Efficient BackProp", sec. 4.4: initialize the
weights so the sigmoid/tanh works in its linear region; Karpathy's makemore part 3, a tanh layer saturated by a
unit-variance initialization that trains to a worse loss than its scaled twin): 0.6, separated by the activation
statistics, unless a look-alike's evidence is there too (modules in eval mode, data off unit scale or a first loss
orders of magnitude too high, a vanishing-gradient or collapsed-output finding, saturation in a minority of a deep
stack): those then keep the diagnosis as before, and this rule proposes nothing. A merely sparse ReLU layer (the
INFO level, > 50% dead) is no cause: Glorot, Bordes & Bengio 2011 measured 50-80% of a rectifier network's
activations at zero in networks that trained well, the healthy corpus' policy network keeps ~75% of a layer off
every batch; and no healthy run or fixed twin of the dev corpus has a hidden-layer WARNING at all (the makemore
twin's tanh layer: 9-34% saturated on every sample, the faulty one 59-68% on all of them). The model's output
sigmoid/tanh counts as saturated only
when the loss stalled, or when the error stopped reaching the weights (``_error_without_gradient``): a
classifier whose predictions became confident saturates it by fitting well. Saturation in fewer than half the
layers of a deep (>= 3) sigmoid/tanh stack is not separated from vanishing gradients (the gradient fades through
the whole stack). Targets outside the range of the model's output sigmoid/tanh (the ``output_out_of_range``
WARNING, ``detectors.output_range``) are out of reach for any weights: 0.85 (``_targets_out_of_range``), with its
own fix (a linear output, or the targets scaled into the range).

Without activation statistics, exactly-zero gradients separate dead units from vanishing ones: a dead ReLU
unit's incoming weights get a gradient of exactly 0, a vanishing one a tiny non-zero one. Weight tensors with
>= 90% zero gradient entries (median over the sampled steps) under a stalled loss make ``dead_relu`` 0.6;
a logged global gradient norm of exactly 0 under a loss stuck from the start, 0.55 (every unit dead, or a graph
cut off from the loss). The loss itself shows an exactly-zero update when it repeats its first value, to float32
rounding, at every point (``course.stall_from_start``'s ``frozen``: a Keras ``CSVLogger`` of epoch means over the
same data, a fixed batch): not one parameter that reaches the output moved. Dead, vanishing or saturated hidden
units leave the output layer its gradient, so the loss first falls to the trivial predictor's; an output ReLU
dead for every input from the start (Lu et al. 2019, "Dying ReLU and Initialization": a dead network is a
constant function and no gradient flows) moves nothing: 0.55, with nothing measured. A saturated output rounded to exactly +-1 in float32 (tanh beyond
|x| ~ 9) or a step that rounds away at a tiny learning rate stay candidates beside it. A loss stuck from the start
as a constant output leaves it (quiet, or scattering only by its batches: ``course.constant_output_like``) with
nothing measured makes each a candidate (0.4), unless the loss then went non-finite: dead or saturated units
pass back no gradient to blow up with.
"""
from __future__ import annotations

import math

import numpy as np

from trainguard.core.detectors.activation_health import output_activation
from trainguard.core.diagnosis.cause import Cause, Fix
from trainguard.core.diagnosis.course import constant_output_like
from trainguard.core.diagnosis.rules._make import CANDIDATE, make_cause
from trainguard.core.diagnosis.rules.data import LARGE_INPUTS_RMS, QUIET_FACTOR
from trainguard.core.diagnosis.run_view import RunView
from trainguard.core.diagnosis.signals import (activations_sampled, data_scale_factors, saturation_in_a_deep_stack,
                                               zero_gradient_layers)
from trainguard.core.findings import Severity

__all__ = ["dead_relu", "saturated_activation"]

STUCK_ERROR = 100.0
GRADIENT_FOLLOWS = 10.0
PERSISTS = 0.5


def _from_findings(view: RunView, code: str, value_key: str, what: str) -> Cause | None:
    stalled = view.stalled
    if not (stalled or view.unstable):
        return _persistent(view, code, value_key, what)
    # A saturated final activation is a confident classifier unless the loss stalled.
    final = _final_activation(view) if code == "saturated_activation" else None
    found = [f for f in view.of(code)
             if (f.severity >= Severity.WARNING and (final is None or f.where != final))
             or (stalled and final is not None and f.where == final)]
    if not found:
        return None
    layers = {f.where: f.evidence.get(value_key) for f in found}
    evidence = {"layers": layers, "steps": [f.step for f in found][:8], "stalled": stalled}
    if code == "saturated_activation" and saturation_in_a_deep_stack(view):
        evidence["deep_stack"] = True  # a minority of a deep stack: vanishing gradients' evidence
    else:
        evidence["separated_by"] = f"activation statistics: units {what}"
    worst = max(layers, key=lambda name: layers[name] or 0.0)
    message = f"{layers[worst]:.0%} of the units of {worst} are {what}" + (", and the loss stalled" if stalled else "")
    return make_cause(view, code, 0.75 if stalled else 0.6, evidence, message)


def _persistent(view: RunView, code: str, value_key: str, what: str) -> Cause | None:
    """Hidden layers with a WARNING finding that held on at least ``PERSISTS`` of their finite samples, in a run
    that learns, when no look-alike's evidence is there (module docstring)."""
    if _look_alike(view, code):
        return None
    final = _final_activation(view)
    thresholds = {f.where: f.evidence["threshold"] for f in view.of(code, Severity.WARNING)
                  if f.where != final and "threshold" in f.evidence}
    held = {name: _share_held(view, name, value_key, threshold) for name, threshold in thresholds.items()}
    layers = {name: share for name, share in held.items() if share is not None and share[0] >= PERSISTS}
    if not layers:
        return None
    worst = max(layers, key=lambda name: layers[name])
    share, samples, median = layers[worst]
    evidence = {"layers": {name: round(layers[name][2], 4) for name in layers},
                "held_on_share_of_samples": {name: round(layers[name][0], 3) for name in layers},
                "samples": samples, "stalled": False,
                "separated_by": f"activation statistics: units {what} on most samples, with no eval-mode module, "
                                "data on unit scale, no vanishing gradient or collapsed output"}
    message = (f"{median:.0%} of the units of {worst} are {what} (median), on {share:.0%} of its {samples} samples: "
               f"capacity the run lost, though its loss still falls")
    return make_cause(view, code, 0.6, evidence, message)


def _share_held(view: RunView, layer: str, value_key: str, threshold: float) -> tuple[float, int, float] | None:
    """(share of the layer's finite samples at or past ``threshold``, their number, their median value)."""
    values = [getattr(a, value_key) for s in view.stats if s.finite for a in s.activations
              if a.name == layer and getattr(a, value_key) is not None and np.isfinite(getattr(a, value_key))]
    if not values:
        return None
    return float(np.mean(np.asarray(values) >= threshold)), len(values), float(np.median(values))


def _look_alike(view: RunView, code: str) -> bool:
    """Evidence that a look-alike explains the units: BatchNorm left in eval mode (unnormalized pre-activations),
    data off unit scale (LeCun et al. 1998: inputs far from unit scale saturate the first layer) or a first loss
    orders of magnitude too high, vanishing gradients (a finding, a collapsed output, or saturation in a minority
    of a deep sigmoid/tanh stack)."""
    factors = data_scale_factors(view)
    inputs = factors.get("inputs")
    return bool(view.has("eval_mode_modules") or view.first_loss_scale
                or any(info["scale_factor"] >= QUIET_FACTOR for info in factors.values())
                or (inputs is not None and math.hypot(inputs["mean"], inputs["std"]) >= LARGE_INPUTS_RMS)
                or view.has("vanishing_gradient", Severity.WARNING) or view.has("output_collapse", Severity.WARNING)
                or (code == "saturated_activation" and saturation_in_a_deep_stack(view)))


def _final_activation(view: RunView) -> str | None:
    """The model's output non-linearity (the classifier's sigmoid, a regressor's tanh), if it has one."""
    for s in reversed(view.stats):
        if s.activations:
            return output_activation(s.activations)
    return None


def _stall_candidate(view: RunView, code: str, what: str) -> Cause | None:
    """A loss stuck from the start in a run that recorded neither activations nor per-layer gradients, and that
    did not then go non-finite: dead or saturated units pass back no gradient to blow up with."""
    if (view.stall is None or not constant_output_like(view.stall) or view.sampled or activations_sampled(view)
            or view.nonfinite_steps):
        return None
    return make_cause(view, code, CANDIDATE, {"stall": view.stall},
                      f"the loss is stuck from the start; {what} are one candidate")


def dead_relu(view: RunView) -> Cause | None:
    measured = _from_findings(view, "dead_relu", "dead_fraction", "dead (never positive)")
    if measured is not None:
        return measured
    zero = zero_gradient_layers(view)
    stalled = view.stalled
    if zero and stalled:
        evidence = {"zero_gradient_layers": zero, "stalled": stalled,
                    "separated_by": "weight tensors with exactly-zero gradients (dead units), not tiny ones"}
        worst = max(zero, key=zero.get)
        message = (f"{zero[worst]:.0%} of the gradient entries of {worst} are exactly zero: the units it feeds "
                   f"are dead" + (", and the loss stalled" if stalled else ""))
        return make_cause(view, "dead_relu", 0.6, evidence, message)
    norms = view.grad_norms[np.isfinite(view.grad_norms)]
    if view.stall is not None and len(norms) >= 3 and float(np.median(norms)) == 0.0:
        message = "the loss is stuck from the start and the gradient norm is exactly 0: every unit is dead"
        return make_cause(view, "dead_relu", 0.55, {"stall": view.stall, "median_grad_norm": 0.0}, message)
    if view.stall is not None and view.stall["frozen"] and not view.sampled and not activations_sampled(view):
        message = (f"the loss never left its first value ({view.stall['first_loss']:.7g}, the same to float rounding "
                   f"at every point): no update reached the output, as when its ReLU units are dead for every "
                   f"input (or no update is applied at all)")
        return make_cause(view, "dead_relu", 0.55, {"stall": view.stall}, message)
    return _stall_candidate(view, "dead_relu", "dead ReLU units")


def saturated_activation(view: RunView) -> Cause | None:
    unreachable = _targets_out_of_range(view)
    if unreachable is not None:
        return unreachable
    measured = _from_findings(view, "saturated_activation", "saturated_fraction", "saturated")
    if measured is not None:
        return measured
    unreached = _error_without_gradient(view)
    if unreached is not None:
        return unreached
    return _stall_candidate(view, "saturated_activation", "saturated sigmoid/tanh units")


def _error_without_gradient(view: RunView) -> Cause | None:
    """The model's output sigmoid/tanh measured saturated, and in the second half of the run the worst 10% of
    the steps have a loss >= ``STUCK_ERROR`` (100) times the median step's while their gradient norm is less
    than ``GRADIENT_FOLLOWS`` (10) times the median step's. The gradient is the error times the activation's
    slope; a unit saturated on the wrong side has a large error and a slope ~0, so those samples' loss stays
    high and nothing moves it (LeCun et al. 1998, "Efficient BackProp", sec. 4.5: targets at the asymptotes of
    the sigmoid drive the outputs into saturation). In a network that learns, the gradient grows with the error:
    the healthy corpus' worst steps have a loss <= 18x the median with a gradient >= 0.8x the median's."""
    final = _final_activation(view)
    if final is None or not any(f.where == final for f in view.of("saturated_activation")):
        return None
    half = len(view.stats) // 2
    losses, norms = view.losses[half:], view.grad_norms[half:]
    keep = np.isfinite(losses) & np.isfinite(norms) & (losses > 0) & (norms > 0)
    if keep.sum() < 20:
        return None
    losses, norms = losses[keep], norms[keep]
    worst = losses >= np.quantile(losses, 0.9)
    typical_loss, typical_norm = float(np.median(losses)), float(np.median(norms))
    loss_ratio = float(np.median(losses[worst])) / typical_loss
    norm_ratio = float(np.median(norms[worst])) / typical_norm
    if loss_ratio < STUCK_ERROR or norm_ratio >= GRADIENT_FOLLOWS:
        return None
    evidence = {"output_activation": final, "worst_loss_over_median": round(loss_ratio, 1),
                "worst_grad_norm_over_median": round(norm_ratio, 3),
                "separated_by": "the output measured saturated, and the worst steps' error reaches no gradient"}
    message = (f"the output {final} is saturated and the worst 10% of the late steps have {loss_ratio:.3g}x the "
               f"median loss with only {norm_ratio:.2g}x its gradient: units saturated on the wrong side, whose "
               f"error the flat activation does not pass back")
    return make_cause(view, "saturated_activation", 0.6, evidence, message)


# The fix when the output sigmoid/tanh cannot reach the targets: the output layer, or the targets into its range.
OUT_OF_RANGE_FIX = (
    "The model's output sigmoid/tanh cannot reach the targets: remove it (a linear output for regression), or "
    "scale the targets into its range ([0, 1] for a sigmoid, [-1, 1] for a tanh; invert the scaling on "
    "predictions).",
    """\
model[-1] = nn.Identity()                       # the output sigmoid/tanh removed: a linear output
# or: y_min, y_max = y_train.min(), y_train.max(); y_train = (y_train - y_min) / (y_max - y_min)""",
    """\
keras.layers.Dense(1, activation=None)          # a linear output instead of activation="sigmoid"/"tanh"
# or: y_min, y_max = y_train.min(), y_train.max(); y_train = (y_train - y_min) / (y_max - y_min)""",
)


def _targets_out_of_range(view: RunView) -> Cause | None:
    """The ``output_out_of_range`` WARNING (``detectors.output_range``): the targets measured outside the range of
    the model's output sigmoid/tanh, out of reach for any weights (LeCun et al. 1998, "Efficient BackProp", sec.
    4.5). 0.85: the evidence is two measurements, the output's kind and the targets', not a pattern of the loss
    that look-alikes share; the large targets' scale is then this cause's evidence, not ``unscaled_data``'s."""
    found = view.of("output_out_of_range", Severity.WARNING)
    if not found:
        return None
    first = found[0].evidence
    evidence = {key: first[key] for key in ("final_activation", "activation", "range", "targets_mean",
                                            "targets_abs_max", "outside", "mse_floor") if key in first}
    evidence["step"] = found[0].step
    evidence["separated_by"] = ("the targets measured outside the range of the model's output sigmoid/tanh: out of "
                                "reach for any weights, whatever the data's scale or the gradients")
    message = (f"the model's output {first.get('activation')} ({first.get('final_activation')}) cannot reach the "
               f"targets: they lie {first.get('outside', float('nan')):.3g} outside its range {first.get('range')}")
    cause = make_cause(view, "saturated_activation", 0.85, evidence, message)
    summary, torch_snippet, keras_snippet = OUT_OF_RANGE_FIX
    return cause._replace(fix=Fix(summary, torch_snippet, keras_snippet, cause.fix.link, cause.fix.framework))
