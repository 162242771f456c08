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
  (a tanh output that cannot reach the targets).
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


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def activation_health(dead_layer_fraction: float = 0.5, saturated_layer_fraction: float = 0.5,
                      collapse_ratio: float = 0.05, patience: int = 2, collapse_patience: int = 3,
                      dead_layer_warning: float = 0.95, collapse_warning: float = 1e-3) -> Detector:
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
        return tuple(found), ActivationHealthState(target_std, streaks, frozenset(reported))

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
