"""Naming the known cause of the first difference between two runs.

The rule follows the order in which a training step uses its inputs: what is fed to the step (batch, learning
rate, batch size), the layers' modes, the weights before the update, the forward pass (running statistics,
loss), the backward pass (gradients), the update. The most upstream difference explains the ones downstream of
it. Cause codes and their meaning: docs/diff.md, section "Causes"; ``bn_inference_mode`` and
``batch_size_dependent_loss`` are the shared codes of :mod:`trainguard.core.causes`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from trainguard.core.causes import cause_doc_link
from trainguard.core.stats import StepStats
from trainguard.diff.result import Cause, Difference

__all__ = ["DIFF_CAUSES", "CauseContext", "name_cause", "agreement"]

# Cause code -> one-line fix. The order is the order of the rule below.
DIFF_CAUSES: dict[str, str] = {
    "none": "",
    "data_order": "seed the data pipeline the same way in both runs (shuffle seed, sampler, augmentation), or "
                  "compare the runs' curves rather than their steps if they are meant to see different data",
    "lr_schedule": "compare the optimizers' learning rates and the schedulers (and when each is stepped: per "
                   "batch or per epoch) in both runs",
    "batch_size": "use the same batch size (and the same handling of the last, smaller batch) in both runs",
    "bn_inference_mode": "train with the layers in training mode: model.train() before the loop in PyTorch, "
                         "model(x, training=True) in a custom Keras training step",
    "initialization": "seed both runs the same way before building the model, or load the same initial weights",
    "batch_size_dependent_loss": "average the loss over the batch in both runs (reduction='mean' in PyTorch, "
                                 "Keras' default 'sum_over_batch_size')",
    "loss_scale": "scale the loss the same way in both runs (a constant factor, a loss scale that is not "
                  "undone, gradient accumulation)",
    "numerical_drift": "nothing to fix if the runs are meant to differ by rounding only (summation order, "
                       "kernels, hardware); compare fewer steps, or raise --rtol",
    "computation": "compare the model code and the training step at the named layer: dtype, dropout "
                   "randomness, regularisation terms, custom layers, gradient clipping",
    "optimizer": "compare the optimizers' settings: momentum, nesterov, weight decay, Adam betas and epsilon, "
                 "gradient clipping, or the optimizer class itself",
}

# A loss ratio within this of the batch size (or of a gradient-norm ratio) is taken as that factor. float32
# sums and means of the same terms agree to ~1e-6; a coincidence within 1e-3 is unlikely.
_RATIO_TOLERANCE = 1e-3
# Rounding drift: the runs first differ by at most this (float32 rounding, ~80 ulps) and the difference grows
# by less than _DRIFT_JUMP per step until it crosses the tolerance. A real change jumps: from bit-identical, or
# by orders of magnitude in one step.
_ROUNDING = 1e-5
_DRIFT_JUMP = 100.0


@dataclass(frozen=True)
class CauseContext:
    step: int  # the first step where the runs differ
    first_compared: int  # the first step both runs recorded
    differences: tuple[Difference, ...]  # at ``step``, ranked
    steps_a: dict[int, StepStats]
    steps_b: dict[int, StepStats]
    compared: Sequence[int]
    fingerprints: bool  # both runs recorded batch fingerprints
    max_rel: dict[int, float]  # per compared step, the largest relative difference of any numeric quantity


def agreement() -> Cause:
    return Cause("none", "the runs agree within tolerance on every compared step", "", _doc("none"))


def name_cause(ctx: CauseContext) -> tuple[Cause, Difference]:
    """The cause and the difference it points at (the run's "first divergence")."""
    by_category: dict[str, list[Difference]] = {}
    for d in ctx.differences:
        by_category.setdefault(d.category, []).append(d)
    step = ctx.step

    if "data" in by_category:
        if "batch_size" in by_category:
            return _batch_size(ctx, by_category["batch_size"][0])
        return _data_order(ctx, by_category["data"][0])
    if "lr" in by_category:
        first = by_category["lr"][0]
        when = "from the first step" if step == ctx.first_compared else f"from step {step} on"
        return _cause("lr_schedule", f"the learning rates differ {when}: A {_num(first.a)}, B {_num(first.b)}; "
                      f"data and model agree up to there", {"a": first.a, "b": first.b}), first
    if "batch_size" in by_category:
        return _batch_size(ctx, by_category["batch_size"][0])
    if "mode" in by_category:
        modes = by_category["mode"]
        run = "B" if modes[0].b else "A"
        in_eval = [d.where for d in modes if (d.b if run == "B" else d.a)]
        return _inference_mode(run, in_eval or [modes[0].where], step, "ran in eval (inference) mode"), modes[0]
    if "bn_stats" in by_category:
        frozen = _frozen_asymmetry(ctx)
        if frozen is not None:
            run, names = frozen
            primary = next((d for d in by_category["bn_stats"] if d.where in names), by_category["bn_stats"][0])
            return _inference_mode(run, names, step, "never updated their running statistics"), primary
    weight_before = [d for d in by_category.get("weight", ()) if d.quantity == "weight_norm"]
    if weight_before and step == ctx.first_compared:
        first = weight_before[0]
        return _cause("initialization", f"the weights differ before the first compared update (step {step}), "
                      f"first in {first.where}: different initialisation, seed or loaded checkpoint",
                      {"where": first.where}), first
    drift = _numerical_drift(ctx)
    if drift is not None:
        return drift
    scale = _loss_scale(ctx)
    if scale is not None:
        return scale
    for category in ("bn_stats", "loss", "gradient"):
        if category in by_category:
            return _computation(ctx, by_category[category][0]), by_category[category][0]
    first = ctx.differences[0]
    return _cause("optimizer", f"the update of step {step if first.quantity == 'update_ratio' else step - 1} "
                  f"differs, first in {first.where}, although the batch, learning rate, loss and gradients agree: "
                  f"the update rule differs", {"where": first.where, "quantity": first.quantity}), first


def _cause(code: str, message: str, evidence: dict[str, Any] | None = None) -> Cause:
    return Cause(code, message, DIFF_CAUSES[code], _doc(code), evidence or {})


def _doc(code: str) -> str:
    try:
        return cause_doc_link(code)
    except ValueError:
        return f"docs/diff.md#{code.replace('_', '-')}"


def _inference_mode(run: str, names: list[str], step: int, how: str) -> Cause:
    shown = ", ".join(f"'{name}'" for name in names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    other = "A" if run == "B" else "B"
    return _cause("bn_inference_mode", f"in run {run}, {shown} {how} from step {step} while in run {other} they "
                  f"trained: the model ran in inference mode during training",
                  {"run": run, "where": names})


def _frozen_asymmetry(ctx: CauseContext) -> tuple[str, list[str]] | None:
    """The run whose running-statistics buffers never changed over the compared steps while the other run's
    did: a normalisation layer in inference mode (Keras records no mode, only the moving statistics)."""
    moving_a, frozen_a = _buffer_motion(ctx.steps_a, ctx.compared)
    moving_b, frozen_b = _buffer_motion(ctx.steps_b, ctx.compared)
    for run, frozen, moving in (("B", frozen_b, moving_a), ("A", frozen_a, moving_b)):
        names = [name for name in frozen if name in moving]
        if names:
            return run, names
    return None


def _buffer_motion(steps: dict[int, StepStats], compared: Sequence[int]) -> tuple[set[str], list[str]]:
    values: dict[str, set[tuple[float | None, float | None]]] = {}
    counts: dict[str, int] = {}
    for step in compared:
        for buf in steps[step].buffers:
            values.setdefault(buf.name, set()).add((buf.mean, buf.norm))
            counts[buf.name] = counts.get(buf.name, 0) + 1
    moving = {name for name, seen in values.items() if len(seen) > 1}
    frozen = [name for name, seen in values.items() if len(seen) == 1 and counts[name] > 1]
    return moving, frozen


def _data_order(ctx: CauseContext, first: Difference) -> tuple[Cause, Difference]:
    prints_a = [ctx.steps_a[s].batch_fingerprint for s in ctx.compared if ctx.steps_a[s].batch_fingerprint]
    prints_b = [ctx.steps_b[s].batch_fingerprint for s in ctx.compared if ctx.steps_b[s].batch_fingerprint]
    shared = len(set(prints_a) & set(prints_b))
    same_batches = sorted(prints_a) == sorted(prints_b)
    what = ("the same batches in another order" if same_batches
            else f"different batches ({shared} of {len(set(prints_a))} batch fingerprints of A also occur in B)")
    message = (f"the runs were fed {what} from step {ctx.step} (shuffling, sampling or preprocessing): a "
               f"data-pipeline difference, not a model difference; learning rate, batch size and modes agree")
    return _cause("data_order", message, {"shared_batches": shared, "batches_a": len(set(prints_a)),
                                          "same_batches_reordered": same_batches}), first


def _batch_size(ctx: CauseContext, first: Difference) -> tuple[Cause, Difference]:
    return _cause("batch_size", f"the batch sizes differ from step {ctx.step}: A {first.a}, B {first.b}",
                  {"a": first.a, "b": first.b}), first


def _numerical_drift(ctx: CauseContext) -> tuple[Cause, Difference] | None:
    """Differences that started at rounding level before this step and grew without a jump."""
    before = [s for s in ctx.compared if s < ctx.step]
    inexact = [s for s in before if ctx.max_rel[s] > 0.0]
    if not inexact or ctx.max_rel[inexact[0]] > _ROUNDING:
        return None
    previous = ctx.max_rel[before[-1]]
    if previous == 0.0 or ctx.max_rel[ctx.step] > _DRIFT_JUMP * previous:
        return None
    first = ctx.differences[0]
    message = (f"the runs differ by rounding only from step {inexact[0]} (largest relative difference "
               f"{ctx.max_rel[inexact[0]]:.2g}), and that difference grew step by step to "
               f"{ctx.max_rel[ctx.step]:.2g} at step {ctx.step}: float32 drift, not a change in the computation")
    return _cause("numerical_drift", message, {"first_inexact_step": inexact[0],
                                               "first_inexact_rel_diff": ctx.max_rel[inexact[0]],
                                               "rel_diff": ctx.max_rel[ctx.step]}), first


def _loss_scale(ctx: CauseContext) -> tuple[Cause, Difference] | None:
    """A loss that differs by the batch size (one run sums over the batch, the other averages), or by a constant
    that the gradient norms share (the loss is scaled)."""
    loss = next((d for d in ctx.differences if d.category == "loss"), None)
    a, b = ctx.steps_a[ctx.step], ctx.steps_b[ctx.step]
    if loss is None or not _usable(a.loss) or not _usable(b.loss):
        return None
    ratio = b.loss / a.loss
    batch = a.batch_size if a.batch_size == b.batch_size else None
    evidence: dict[str, Any] = {"loss_ratio": ratio, "batch_size": batch}
    if batch is not None and batch > 1:
        for factor, summing in ((batch, "B"), (1.0 / batch, "A")):
            if abs(ratio / factor - 1.0) < _RATIO_TOLERANCE:
                other = "A" if summing == "B" else "B"
                return _cause("batch_size_dependent_loss",
                              f"at step {ctx.step}, B's loss is {ratio:.4g} x A's, the batch size ({batch}): run "
                              f"{summing} sums the loss over the batch where run {other} averages it",
                              {**evidence, "summing_run": summing}), loss
    if _usable(a.grad_norm) and _usable(b.grad_norm) and abs(ratio - 1.0) > _RATIO_TOLERANCE:
        grad_ratio = b.grad_norm / a.grad_norm
        if abs(grad_ratio / ratio - 1.0) < _RATIO_TOLERANCE:
            return _cause("loss_scale", f"at step {ctx.step}, B's loss is {ratio:.4g} x A's and its gradient "
                          f"norm {grad_ratio:.4g} x: the loss is scaled differently",
                          {**evidence, "grad_ratio": grad_ratio}), loss
    return None


def _computation(ctx: CauseContext, first: Difference) -> Cause:
    where = f" in {first.where}" if first.where else ""
    if first.category == "bn_stats":
        what = (f"the running statistics{where} differ first, with both runs in training mode: BatchNorm "
                f"momentum or eps differ, or that layer's inputs do")
    elif first.category == "loss":
        what = "the loss differs first, while the weights, modes and running statistics agree: the forward pass " \
               "computes differently"
    else:
        what = f"the gradient{where} differs first, while the loss agrees: the backward pass differs"
    hint = ("" if ctx.fingerprints else "; batch fingerprints were not recorded in both runs, so different data "
            "is not ruled out (pass inputs= and targets= to the guard, preset 'forensic')")
    return _cause("computation", f"at step {ctx.step}, {what}{hint}", {"where": first.where,
                                                                     "quantity": first.quantity})


def _usable(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value != 0.0


def _num(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)
