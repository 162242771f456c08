"""``exploding_gradient`` and ``vanishing_gradient``.

Exploding: the ``exploding_gradient`` findings (robust z-score of the gradient norm, sustained growth, and
AUTOTRAINER's ||G_first||/||G_last|| >= 70; Zhang et al., ICSE 2021), weighed by how far the norm rose over its
first values: a finding whose norm stayed below the initial level is ignored (an outlier among a converged
run's tiny gradients), one below 10x counts as an outlier more than a blow-up, and >= 100x is explosive even
without a finding; and non-finite values following that growth (Pascanu, Mikolov & Bengio 2013 describe the
blow-up; clipping by global norm is their fix).

Vanishing: the ``vanishing_gradient`` findings (AUTOTRAINER: ratio <= 1e-3 with ||G_first|| <= 1e-4; SageMaker
Debugger: mean |g| < 1e-7; a weak note alone when the loss fell well, as a converged model's gradients are tiny
too), the ``output_collapse`` finding under a stalled loss (the output's std over the batch below 5% of the
targets': the model predicts a constant, seed 001 experiment 3) when the loss stalled or the output is still
collapsed (below 10% of the targets' std) at the last sample (a model whose output then spread out was only slow
to start), AUTOTRAINER's ||G_first||/||G_last|| on the
sampled steps (<= 1e-2 supports it) and a stalled loss.

What separates them from their look-alikes:
- exploding vs a bad batch: the norm *stays* up (median of the next points >= 3x the initial level) or goes
  non-finite, or the loss does not come back. A one-step outlier of the norm on a batch whose loss spiked and
  recovered is that batch's gradient, not an explosion (``bad_batch``).
- exploding vs ``lr_too_high``: the updates were ordinary across the layers before the blow-up; when most layers
  already moved >= 1e-2 of their norm per step on data of unit scale, the learning rate is the candidate, and
  this rule stays below 0.6 (off-scale data makes every update large at any learning rate). With no update
  ratios recorded (a log with the global gradient norm only) nothing separates the two: at most 0.55.
- exploding vs ``unscaled_data``: the engine lets large inputs explain the explosion (``EXPLAINS``).
- a gradient far larger than the weights it updates (median ||g|| / ||W|| >= 100 over the weight tensors) is an
  explosion whatever the updates looked like, even on the first step (an RNN without clipping).
- a cliff (``signals.gradient_cliff``): the trouble began with a one-step jump of the gradient norm to >= 100x
  its level over >= 10 calm points before, and the run did not come back. Pascanu et al. (2013, sec. 3) describe
  the exploding gradient of recurrent networks as such steep walls of the loss surface; a learning rate too high
  grows the instability step by step instead. Separated, at least 0.65, even with large updates across the
  layers (recurrent LMs run at such update ratios with clipping: PyTorch's word_language_model, SGD lr 20).
  Not separating with Adam after a calm below 1/10 of the initial norm: a second moment shrunk by such a calm
  lags the returning gradients the same way (``adam_epsilon``).
- a run-up to non-finite (``signals.run_up_to_non_finite``): the gradient norm rose at each of the last >= 3
  points before the gradients went non-finite, >= 10x over them (keras#5127's RNN: 58 -> 124 -> 1701 -> inf).
  An explosion, but one an LR too high produces alike: 0.55 at most unless other evidence separates it.
- a loss stuck from the start that then blew up abruptly, in a log with no gradient norm at all: a cliff is one
  candidate (0.4), beside Adam's epsilon; nothing in such a log tells them apart.
- vanishing vs ``dead_relu`` and ``saturated_activation``: activations were sampled and show neither dead nor
  saturated units, and no weight tensor gets exactly-zero gradients (dead units' incoming weights do). Without
  activation statistics vanishing gradients stay below 0.6: a network of dead ReLUs has a tiny first/last
  gradient ratio and a constant output too. A loss stuck from the start with no gradient statistics at all is a
  candidate (0.4), or 0.5 when the logged gradient norm is tiny (<= 1e-4) but not zero; none when the norm is
  exactly 0 or the loss is frozen (its first value to float rounding at every point: vanishing gradients leave
  the output layer learning, so the loss moves at least to the trivial predictor's).
"""
from __future__ import annotations

import math

import numpy as np

from trainguard.core.diagnosis.cause import Cause
from trainguard.core.diagnosis.course import constant_output_like, recovery
from trainguard.core.diagnosis.rules._make import CANDIDATE, make_cause, strength
from trainguard.core.diagnosis.run_view import RunView
from trainguard.core.diagnosis.signals import (activations_sampled, data_off_scale, first_last_gradient_ratio,
                                               first_loss_on_unit_data, gradient_cliff, gradient_growth,
                                               run_up_to_non_finite, saturation_in_a_deep_stack, update_ratio_spread,
                                               zero_gradient_layers, blow_up_after_calm)
from trainguard.core.findings import Severity

__all__ = ["exploding_gradient", "vanishing_gradient"]

EXPLOSIVE_GROWTH = 100.0
VANISHING_RATIO = 1e-2
STAYED_UP = 3.0
TINY_GRAD_NORM = 1e-4
AMPLIFIED_AT_INIT = 100.0
SHRUNK_CALM = 0.1  # a calm level below 1/10 of the initial gradient norm: adam_epsilon's calm phase


def exploding_gradient(view: RunView) -> Cause | None:
    growth = gradient_growth(view)
    initial = growth["initial_grad_norm"] if growth is not None else None
    # A finding counts when the norm it flagged rose above where training started: an outlier among the tiny
    # gradients of a converged run is not an explosion, unless non-finite values follow it.
    found, transient = [], []
    for f in view.of("exploding_gradient", Severity.WARNING):
        rise = _rise_after(view, f.step, initial)
        went_non_finite = any(f.step <= s <= f.step + 10 for s in view.nonfinite_steps)
        if not went_non_finite and not _sustained(view, f.step, initial):
            transient.append(f.step)
        elif (rise is not None and rise > 1.0) or went_non_finite:
            found.append((f, rise))
    grew = (growth is not None and growth["growth"] >= EXPLOSIVE_GROWTH
            and (bool(view.nonfinite_steps) or _sustained(view, growth["peak_step"], initial)))
    at_init = _exploding_at_init(view)
    cliff = gradient_cliff(view)
    run_up = run_up_to_non_finite(view)
    if not found and not grew and at_init is None and cliff is None and run_up is None:
        return _blown_up_after_a_stall(view)
    if at_init is not None and not found and not grew and cliff is None:
        confidence = 0.65 + (0.1 if view.nonfinite_steps else 0.0)
        message = (f"the first loss, before any update, is {at_init['first_over_trivial']:.3g}x a trivial "
                   f"predictor's on data of unit scale"
                   + (f", and the run went non-finite at step {view.nonfinite_steps[0]}" if view.nonfinite_steps
                      else "") + ": the network amplifies its signal from initialization on (forward and back)")
        return make_cause(view, "exploding_gradient", confidence, at_init, message)
    top_rise = max((r for _, r in found if r is not None), default=0.0)
    # A finding backed by real growth (>= 10x) is strong; one whose norm barely doubled is an outlier, not a blow-up.
    confidence = (0.7 if top_rise >= 10 else 0.6) if found else 0.55
    evidence: dict = {}
    if transient:
        evidence["transient_outliers"] = transient[:8]
    if found:
        evidence["steps"] = [f.step for f, _ in found][:8]
        layers = sorted({f.where for f, _ in found if f.where})
        if layers:
            evidence["layers"] = layers
    if growth is not None:
        evidence.update(growth)
        if grew:
            confidence += 0.1 * strength(growth["growth"], EXPLOSIVE_GROWTH / 10, EXPLOSIVE_GROWTH * 10)
    nonfinite_after = [s for s in view.nonfinite_steps if not found or s >= found[0][0].step]
    if nonfinite_after:
        evidence["non_finite_step"] = nonfinite_after[0]
        layer = next((f.where for f in view.of("non_finite") if f.where), None)
        if layer:
            evidence["first_non_finite"] = layer
        confidence += 0.1
    if run_up is not None:
        evidence["run_up_to_non_finite"] = run_up
    spread = update_ratio_spread(view, before=view.first_unstable_step)
    off_scale = data_off_scale(view)
    if cliff is not None:
        evidence["cliff"] = cliff
        confidence = max(confidence, 0.65)
        # With Adam, a jump from a calm whose gradients had shrunk far below their start is what a lagging second
        # moment produces too (adam_epsilon's calm-then-return): shared evidence, not a separating one.
        adam = any(l.adam_update_rms is not None for s in view.sampled for l in s.layers)
        if not (adam and cliff["level_over_initial"] <= SHRUNK_CALM):
            evidence["separated_by"] = ("the gradient norm jumped in one step from a calm run and never came back "
                                        "(a cliff), rather than growing step by step as under a learning rate too "
                                        "high")
    elif (spread is not None and spread["median_update_ratio"] >= 1e-2 and spread["share_of_layers_large"] >= 0.5
            and not off_scale and (spread["median_grad_to_weight"] or 0.0) < 100):
        evidence["large_updates_across_layers"] = spread["median_update_ratio"]  # lr_too_high's evidence
    elif spread is not None and (spread["median_grad_to_weight"] or 0.0) >= 100:
        evidence["separated_by"] = "gradients far larger than the weights they update (||g|| / ||W|| >= 100)"
        evidence["median_grad_to_weight"] = spread["median_grad_to_weight"]
    elif (top_rise >= 10 or grew or nonfinite_after) and (spread is not None or off_scale):
        evidence["separated_by"] = ("the gradient norm grew and stayed up (or went non-finite) while the updates "
                                    "were ordinary across the layers")
    if cliff is not None:
        message = (f"gradient norm jumped {cliff['jump']:.3g}x in one step at step {cliff['step']} "
                   f"({cliff['level_before']:.3g} -> {cliff['grad_norm']:.3g}) after {cliff['calm_points']} calm points")
    elif run_up is not None and (growth is None or growth["growth"] < run_up["run_up"]):
        message = (f"gradient norm rose {run_up['run_up']:.3g}x over the last {len(run_up['grad_norms_before'])} "
                   f"steps before the gradients went non-finite ("
                   + " -> ".join(f"{n:.3g}" for n in run_up["grad_norms_before"]) + ")")
    elif growth is not None and growth["growth"] >= 10:
        message = (f"gradient norm grew {growth['growth']:.3g}x ({growth['initial_grad_norm']:.3g} -> "
                   f"{growth['peak_grad_norm']:.3g} at step {growth['peak_step']})")
    else:
        message = f"gradient-norm outliers at step(s) {', '.join(str(f.step) for f, _ in found[:4])}"
    if nonfinite_after:
        message += f", then non-finite at step {nonfinite_after[0]}"
    return make_cause(view, "exploding_gradient", confidence, evidence, message)


def _blown_up_after_a_stall(view: RunView) -> Cause | None:
    """A loss stuck from the start that then blew up abruptly, with no gradient norm logged: a cliff of the loss
    surface (Pascanu, Mikolov & Bengio 2013, sec. 3) is one candidate, beside a lagging Adam second moment."""
    blow_up = blow_up_after_calm(view)
    if blow_up is None or view.stall is None:
        return None
    message = (f"the loss blew up abruptly at step {blow_up.step} after being stuck from the start (no gradient norm "
               f"logged); an exploding gradient is one candidate")
    return make_cause(view, "exploding_gradient", CANDIDATE, {**blow_up.evidence, "stall": view.stall}, message)


def _exploding_at_init(view: RunView) -> dict | None:
    """The first loss >= ``AMPLIFIED_AT_INIT`` (100) times a trivial predictor's on data measured at unit scale
    (``first_loss_on_unit_data``), and the run unstable from its first points. The loss before the first update
    owes nothing to the learning rate, nor to the data's scale here: the network's forward signal already grows
    through its layers or time steps, and the backward one grows by the same Jacobians (Glorot & Bengio 2010;
    Pascanu, Mikolov & Bengio 2013, sec. 2 for recurrent networks). A freshly initialized network on standardized
    data starts near the trivial level (the healthy corpus: at most 2x; cross-entropy over 1e6 classes is 14)."""
    first = first_loss_on_unit_data(view)
    onset = view.first_unstable_step
    if first is None or first["first_over_trivial"] < AMPLIFIED_AT_INIT or onset is None:
        return None
    if view.point_of(onset) > max(10, len(view.stats) // 10):
        return None
    return {**first, "unstable_from_step": onset, "initial_grad_norm": float(view.grad_norms[0]),
            "separated_by": "a first loss far above a trivial predictor's before any update, on unit-scale data: "
                            "neither the learning rate nor the data's scale"}


def _rise_after(view: RunView, step: int, initial: float | None, span: int = 5) -> float | None:
    """The largest finite gradient norm in steps ``step .. step + span`` over the run's initial norm."""
    if not initial:
        return None
    window = view.grad_norms[(view.steps >= step) & (view.steps <= step + span) & np.isfinite(view.grad_norms)]
    return float(window.max() / initial) if len(window) else None


def _sustained(view: RunView, step: int, initial: float | None, span: int = 20) -> bool:
    """The gradient norm stayed up after ``step`` (median of the points +3..+span >= 3x its level in the
    ``span`` points before, or the initial level at the start of the run), or the loss did not come back; a
    one-step outlier on a bad batch does neither."""
    at = view.point_of(step)
    after = view.grad_norms[at + 3:at + 3 + span]
    after = after[np.isfinite(after)]
    before = view.grad_norms[max(0, at - span):at]
    before = before[np.isfinite(before)]
    level = float(np.median(before)) if len(before) >= 3 else initial
    if level and len(after) >= 2 and float(np.median(after)) >= STAYED_UP * level:
        return True
    back = recovery(view.losses, at, span)
    return back is not None and not back["recovered"]


def vanishing_gradient(view: RunView) -> Cause | None:
    found = view.of("vanishing_gradient", Severity.WARNING)
    stalled = view.stalled
    # A freshly initialized model's output is nearly constant too: a collapse counts when the loss stalled or
    # the output is still collapsed at the end of the run.
    collapse = view.of("output_collapse", Severity.WARNING) if stalled or _collapsed_at_end(view) else []
    layer_ratio = first_last_gradient_ratio(view)
    small_ratio = layer_ratio is not None and layer_ratio["ratio"] <= VANISHING_RATIO
    if not found and not collapse and not (small_ratio and stalled):
        return _from_loss_alone(view)
    evidence: dict = {"stalled": stalled}
    confidence = 0.0
    if found:
        # Tiny gradients in a run whose loss fell, with no collapse and no gap between first and last layer,
        # are those of a converged model: a note, not a cause.
        confidence = 0.7 if (stalled or collapse or small_ratio) else 0.35
        evidence.update(steps=[f.step for f in found][:8], layers=sorted({f.where for f in found if f.where}))
    if collapse:
        confidence = max(confidence, 0.65) + (0.15 if found else 0.0)
        evidence.update(output_collapse={k: collapse[0].evidence.get(k) for k in ("output_to_target_std",
                                                                                  "target_std")},
                        output_layer=collapse[0].where, collapse_step=collapse[0].step)
    if layer_ratio is not None:
        evidence["first_last_grad_ratio"] = layer_ratio
    if small_ratio:
        gap = VANISHING_RATIO / max(layer_ratio["ratio"], 1e-30)  # a first layer with no gradient at all: 0
        confidence = max(confidence, 0.45) + 0.1 * strength(gap, 1, 100)
    if stalled:
        confidence += 0.05
    zero = zero_gradient_layers(view)
    if zero:
        evidence["zero_gradient_layers"] = zero  # dead units' incoming weights: dead_relu's evidence
    elif (activations_sampled(view) and not view.has("dead_relu", Severity.WARNING)
          and (not view.has("saturated_activation", Severity.WARNING) or saturation_in_a_deep_stack(view))):
        evidence["separated_by"] = ("gradients small but not zero, with no dead units and no saturation beyond a "
                                    "minority of a deep sigmoid/tanh stack")
    parts = []
    if layer_ratio is not None:
        parts.append(f"gradient of {layer_ratio['first']} is {layer_ratio['ratio']:.2g}x that of {layer_ratio['last']}")
    if collapse:
        parts.append(collapse[0].message)
    if found and not parts:
        parts.append(found[0].message)
    message = "gradients vanish toward the input: " + "; ".join(parts)
    return make_cause(view, "vanishing_gradient", confidence, evidence, message)


def _collapsed_at_end(view: RunView, ratio: float = 0.1) -> bool:
    """The last sampled output's std over the batch is still below ``ratio`` of the targets' std."""
    target_std = math.sqrt(view.targets_variance) if view.targets_variance else None
    for s in reversed(view.stats):
        output = next((a for a in s.activations if a.kind == "output"), None)
        if output is not None and output.output_std is not None and math.isfinite(output.output_std):
            return bool(target_std and output.output_std < ratio * target_std)
    return False


def _from_loss_alone(view: RunView) -> Cause | None:
    """A loss stuck from the start, with at most the global gradient norm logged: a candidate, unless the loss
    then went non-finite (vanishing gradients do not blow up)."""
    if view.stall is None or not constant_output_like(view.stall) or view.sampled or view.nonfinite_steps:
        return None
    norms = view.grad_norms[np.isfinite(view.grad_norms)]
    median = float(np.median(norms)) if len(norms) else None
    if median == 0.0 or view.stall["frozen"]:
        return None  # exactly no gradient or no update: dead units or a cut graph, not a vanishing one
    tiny = median is not None and median <= TINY_GRAD_NORM
    evidence = {"stall": view.stall, "median_grad_norm": median}
    message = ("the loss is stuck from the start" + (f" and the gradient norm is tiny ({median:.2g})" if tiny else "")
               + "; vanishing gradients are one candidate")
    return make_cause(view, "vanishing_gradient", 0.5 if tiny else CANDIDATE, evidence, message)
