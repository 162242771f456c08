"""``activation_health``: dead ReLU units, saturated sigmoid/tanh units, and a collapsed output.

Rules, each on the activation records the adapter samples through forward hooks (``StepStats.activations``):

- ``dead_relu``: more than ``dead_layer_fraction`` (50%) of a ReLU layer's units gave no positive output over the
  whole batch. SageMaker Debugger's ``DeadRelu`` rule: a unit active less than 1% of the time is dead, and a layer
  with more than 50% dead units is flagged (``threshold_inactivity`` 1.0, ``threshold_layer`` 50.0). On the
  severity ladder (docs/severity.md) that is INFO: a sparse layer is what a healthy ReLU network has (Glorot,
  Bordes & Bengio, "Deep Sparse Rectifier Neural Networks", AISTATS 2011: ~50-80% of hidden units at zero), and
  a small or correlated batch, or a Dropout before the ReLU, leaves most units without a positive output over
  it (the corpus' REINFORCE policy: 69-84% over its episodes, which it learns from). WARNING once at least
  ``dead_layer_warning`` (95%) of the layer is dead: almost no gradient flows through it to the layers below
  (the corpus' dead-ReLU bugs: 100%; its healthy runs: at most 84%).
- ``saturated_activation``: more than ``saturated_layer_fraction`` (50%) of a sigmoid/tanh layer's inputs lie
  beyond the saturation bounds, where the derivative is ~0 (SageMaker Debugger's ``SaturatedActivation`` rule,
  ``threshold_layer`` 50.0; the adapter documents the bounds it uses). On the model's output non-linearity (the last
  record before the output, whose output is the model's output) it is INFO with ``final_activation``: a classifier's sigmoid saturates when its
  predictions become confident, which is a good fit, not harm; the diagnosis counts it only with a stalled loss
  (a tanh output that cannot reach the targets). It is a WARNING once the error stops reaching the weights: from
  the first sample that finds the output saturated, the last ``stuck_window`` (200) steps' losses and gradient
  norms are kept, and on ``patience`` consecutive sampled steps the worst 10% of them have a median loss >=
  ``stuck_error`` (100) times the window's median with a median gradient norm < ``gradient_follows`` (10) times
  the window's median. The gradient is the error times the activation's slope: a unit saturated on the wrong side
  has a large error and a slope ~0, so those samples' loss stays high and nothing moves it (LeCun et al.,
  "Efficient BackProp", 1998, sec. 4.5: targets at a sigmoid's asymptotes drive its outputs into saturation;
  Glorot & Bengio 2010 on saturated units that learn slowly). The corpus' tanh network with +-1 targets
  (``torch_so13632976``): its worst steps at 285-1400x the median loss with 1.3x its gradient norm; in its healthy
  runs the gradient grows with the error (worst steps <= 18x the median loss, with >= 0.8x its gradient norm;
  the diagnosis' ``_error_without_gradient`` reads the same measure over a finished run).
- ``output_collapse``: the std of the model's output over the batch is below ``collapse_ratio`` (5%) of the
  targets' std: the predictions are nearly constant, the model predicts the mean (seed case 001, experiment 3:
  a deep sigmoid MLP answered 0.573, 0.574, 0.574 for inputs 1, 2, 3). The output is the record of kind
  ``"output"`` (the torch adapter's ``"(output)"``), else the last record; the targets' std comes from the first
  batches' summary, so this needs ``targets=`` passed to the guard. INFO below 5%: a model that has not started
  to learn yet answers nearly the same for every input too (the corpus' healthy 1-D convnet stays at 2% of the
  targets' std for 150 steps at ln 2, then learns; its healthy runs and fixed twins go down to 0.4%). WARNING
  below ``collapse_warning`` (0.1%): a constant to three digits, which no healthy run of the corpus reached and
  its collapsed runs (dead output units, saturated sigmoid stacks, unscaled targets) all did (at most 0.01%).

A condition must hold on ``patience`` (2) consecutive sampled steps before it is reported, once per layer, level
and episode; it re-arms when it clears (a layer found sparse at INFO that then dies is reported again, at WARNING). A collapse needs ``collapse_patience`` (3) samples on which the
output's std also did not grow past twice its value at the start of the streak: a freshly initialized model's
output is nearly constant too, but one that learns spreads it out (a growing output restarts the streak).
Non-finite records are ignored: after a NaN, activations say nothing about health.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from trainguard.core.detector import Detector
from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import ActivationStats, StepStats

__all__ = ["activation_health", "ActivationHealthState", "output_activation"]

_SATURATING = ("sigmoid", "tanh")


class ActivationHealthState(NamedTuple):
    target_std: float | None  # std of the first targets summary seen
    # (code, layer, severity) -> (consecutive sampled steps the condition held, the value when the streak started)
    streaks: dict[tuple[str, str, Severity], tuple[int, float]]
    reported: frozenset[tuple[str, str, Severity]]  # (code, layer, severity) episodes already reported
    # Once the output non-linearity was found saturated: the last stuck_window (loss, grad norm) pairs; else None
    watch: tuple[tuple[float, float], ...] | None = None
    stuck_hits: int = 0  # consecutive sampled steps on which the worst steps' error reached no gradient
    stuck_reported: bool = False


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def activation_health(dead_layer_fraction: float = 0.5, saturated_layer_fraction: float = 0.5,
                      collapse_ratio: float = 0.05, patience: int = 2, collapse_patience: int = 3,
                      dead_layer_warning: float = 0.95, collapse_warning: float = 1e-3, stuck_window: int = 200,
                      stuck_error: float = 100.0, gradient_follows: float = 10.0) -> Detector:
    def init() -> ActivationHealthState:
        return ActivationHealthState(None, {}, frozenset())

    def conditions(acts: tuple[ActivationStats, ...], target_std: float | None):
        """(code, layer, severity, value, threshold, patience) for every condition that holds at this step."""
        held = []
        final = output_activation(acts)
        for a in acts:
            if a.kind == "relu" and _finite(a.dead_fraction) and a.dead_fraction > dead_layer_fraction:
                if a.dead_fraction >= dead_layer_warning:
                    held.append(("dead_relu", a.name, Severity.WARNING, a.dead_fraction, dead_layer_warning,
                                 patience))
                else:
                    held.append(("dead_relu", a.name, Severity.INFO, a.dead_fraction, dead_layer_fraction, patience))
            if (a.kind in _SATURATING and _finite(a.saturated_fraction)
                    and a.saturated_fraction > saturated_layer_fraction):
                code = "saturated_output" if a.name == final else "saturated_activation"
                held.append((code, a.name, Severity.WARNING, a.saturated_fraction, saturated_layer_fraction,
                             patience))
        output = next((a for a in acts if a.kind == "output"), None) or acts[-1]
        if output is not None and _finite(output.output_std) and target_std:
            ratio = output.output_std / target_std
            if ratio < collapse_warning:
                held.append(("output_collapse", output.name, Severity.WARNING, ratio, collapse_warning,
                             collapse_patience))
            elif ratio < collapse_ratio:
                held.append(("output_collapse", output.name, Severity.INFO, ratio, collapse_ratio,
                             collapse_patience))
        return held

    def update(stats: StepStats, state: ActivationHealthState):
        target_std = state.target_std
        if target_std is None and stats.targets is not None and _finite(stats.targets.std) and stats.targets.std > 0:
            target_std = stats.targets.std
            state = state._replace(target_std=target_std)
        if (state.watch is not None and not state.stuck_reported and _finite(stats.loss) and stats.loss > 0
                and _finite(stats.grad_norm) and stats.grad_norm > 0):
            state = state._replace(watch=(state.watch + ((stats.loss, stats.grad_norm),))[-stuck_window:])
        if not stats.activations or not stats.finite:
            return (), state
        held = conditions(stats.activations, target_std)
        streaks = {}
        found = []
        # An episode ends when its layer's condition clears at every level: a layer that wavers around the
        # WARNING threshold is reported once.
        reported = {key for key in state.reported if any((c, n) == key[:2] for c, n, *_ in held)}
        for code, name, severity, value, threshold, needed in held:
            key = (code, name, severity)
            count, start = state.streaks.get(key, (0, value))
            if code == "output_collapse" and value > 2.0 * start:
                count, start = 0, value  # the output is spreading out: the model is learning, not collapsed
            streaks[key] = (count + 1, start)
            if count + 1 >= needed and key not in reported:
                reported.add(key)
                found.append(_finding(code, name, severity, value, threshold, count + 1, stats.step, target_std))
        watch, stuck_hits, stuck_reported = state.watch, state.stuck_hits, state.stuck_reported
        saturated_output = next((name for code, name, *_ in held if code == "saturated_output"), None)
        if watch is None and saturated_output is not None:
            watch = ()
        elif watch is not None and len(watch) == stuck_window and not stuck_reported:
            stuck = _error_without_gradient(watch, stuck_error, gradient_follows)
            stuck_hits = stuck_hits + 1 if stuck is not None else 0
            final = output_activation(stats.activations)
            if stuck is not None and stuck_hits >= patience and final is not None:
                stuck_reported = True
                found.append(_stuck_finding(final, stats.activations, stuck, stuck_hits, stats.step))
        return tuple(found), ActivationHealthState(target_std, streaks, frozenset(reported), watch, stuck_hits,
                                                   stuck_reported)

    return Detector("activation_health", init, update)


def output_activation(acts: tuple[ActivationStats, ...]) -> str | None:
    """The name of the record that is the model's output non-linearity: the last record before the output whose
    output is the model's output (the same std over the batch), as a classifier's final sigmoid; None when the
    last activation feeds another layer."""
    output = next((a for a in acts if a.kind == "output"), None)
    hidden = [a for a in acts if a.kind != "output"]
    if output is None or not hidden or not _finite(output.output_std) or not _finite(hidden[-1].output_std):
        return None
    same = abs(hidden[-1].output_std - output.output_std) <= 1e-6 * max(abs(output.output_std), 1e-12)
    return hidden[-1].name if same else None


def _error_without_gradient(watch: tuple[tuple[float, float], ...], stuck_error: float,
                            gradient_follows: float) -> dict[str, float] | None:
    """The worst 10% of the watched steps' median loss and gradient norm over the window's medians, when the
    loss is >= ``stuck_error`` times and the gradient < ``gradient_follows`` times; else None."""
    pairs = np.asarray(watch)
    losses, norms = pairs[:, 0], pairs[:, 1]
    worst = losses >= np.quantile(losses, 0.9)
    loss_ratio = float(np.median(losses[worst]) / np.median(losses))
    norm_ratio = float(np.median(norms[worst]) / np.median(norms))
    if loss_ratio >= stuck_error and norm_ratio < gradient_follows:
        return {"worst_loss_over_median": loss_ratio, "worst_grad_norm_over_median": norm_ratio,
                "window": len(watch), "stuck_error": stuck_error, "gradient_follows": gradient_follows}
    return None


def _stuck_finding(final: str, acts: tuple[ActivationStats, ...], stuck: dict[str, float], samples: int,
                   step: int) -> Finding:
    record = next(a for a in acts if a.name == final)
    evidence = {"rule": "error_without_gradient", "final_activation": True, "samples": samples, **stuck}
    if _finite(record.saturated_fraction):
        evidence["saturated_fraction"] = record.saturated_fraction
    message = (f"the model's final {record.kind} ({final}) is saturated and its error no longer reaches the weights: "
               f"the worst 10% of the last {stuck['window']} steps have {stuck['worst_loss_over_median']:.3g}x the "
               f"median loss with {stuck['worst_grad_norm_over_median']:.2g}x its gradient norm (units saturated on "
               f"the wrong side)")
    return Finding("saturated_activation", Severity.WARNING, step, final, evidence, message)


def _finding(code: str, name: str, severity: Severity, value: float, threshold: float, samples: int, step: int,
             target_std: float | None) -> Finding:
    evidence = {"value": value, "threshold": threshold, "samples": samples}
    if code == "dead_relu":
        message = f"{value:.0%} of the ReLU units in {name} are dead (no positive output over the batch)"
        evidence["dead_fraction"] = value
    elif code in ("saturated_activation", "saturated_output"):
        message = f"{value:.0%} of the inputs of {name} are in the flat, saturated part of the activation"
        evidence["saturated_fraction"] = value
        if code == "saturated_output":
            # The model's final sigmoid/tanh: confident predictions saturate it in a model that fits well.
            return Finding("saturated_activation", Severity.INFO, step, name, {**evidence, "final_activation": True},
                           message + " (the model's final activation)")
    else:
        message = (f"the output of {name} is nearly constant: its std over the batch is {value:.2g} of the "
                   f"targets' std ({target_std:.3g})")
        evidence["output_to_target_std"] = value
        evidence["target_std"] = target_std
    return Finding(code, severity, step, name, evidence, message)
