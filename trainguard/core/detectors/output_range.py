"""``output_range``: the model's output sigmoid/tanh cannot reach the regression targets.

A sigmoid's output lies in [0, 1], a tanh's in [-1, 1]. Targets outside that range are out of reach for every choice
of weights: the output is pushed to its bound and stays there, and the loss keeps a floor well above 0 (LeCun,
Bottou, Orr & Mueller, "Efficient BackProp", 1998, sec. 4.5: choose the targets within the range of the output
sigmoid; Stack Overflow 62641394 "When do we not need activation function?", a sigmoid unit regressing y = 2x + 1
stuck near 1, and 77588498 "Issue in simple neural network", a tanh output on targets up to +-200). The fix is a
linear output, or targets scaled into the output's range.

Rule: the model's output non-linearity (``activation_health.output_activation``: the last activation record
whose output is the model's output) is a sigmoid or a tanh, and the targets of the first batches
(``StepStats.targets``, which needs ``targets=`` passed to the guard) lie outside its range by at least
``margin`` (0.5), in the output's own units, by either of two measures the summary proves:

- ``beyond_bound``: how far the smallest or the largest target lies past the range's bound, where the adapter
  measured them (``TensorSummary.min``/``max``); else ``|max| - 1``: some target lies that far past +-1, outside
  both ranges;
- ``mean_gap``: the distance from the targets' mean to the range. Every output in the range has its batch mean in
  the range too, so the mean squared error cannot fall below ``mean_gap ** 2`` (E[(y - p)^2] >= (E[y] - E[p])^2):
  a floor no training removes.

0.5 is a target half the bound's size beyond it: a squared error of at least 0.25 on that sample. Healthy runs
with a bounded output have targets in its range by construction (0/1 labels under a binary cross-entropy, label
smoothing, [0, 1] pixels of an autoencoder, [-1, 1] actions): both measures exactly 0 (the dev corpus' 5 healthy
runs and 3 fixed twins with a sigmoid output, and a tanh on +-1 targets: all in range, 0 fired). Targets given as
class indices are integers, which the adapters do not summarize, and a softmax or logits output is no bounded
output found: nothing is said. Without min and max (an older log, a compiled Keras step), targets in [-1, 0.5]
under a sigmoid (mean inside, ``|max|`` <= 1) are past what mean and ``|max|`` prove, and not reported.

The first summary's mean and the widest |max|, min and max of the summaries seen are kept (the adapters summarize
the first batches only); the condition must hold on ``patience`` (2) consecutive sampled steps with activation
records, as ``activation_health``'s do, and is reported once, at WARNING (docs/severity.md: the run is harmed from
its first step: the loss cannot fall below the floor).
"""
from __future__ import annotations

import math
from typing import NamedTuple

from trainguard.core.detector import Detector
from trainguard.core.detectors.activation_health import output_activation
from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import StepStats, TensorSummary

__all__ = ["output_range", "OutputRangeState", "BOUNDED_RANGES", "outside_range"]

BOUNDED_RANGES = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}


class OutputRangeState(NamedTuple):
    # (the first summary's mean and std, the widest |max|, the smallest min and the largest max; None: not measured)
    targets: tuple[float, float, float, float | None, float | None] | None
    streak: int  # consecutive sampled steps on which the bounded output could not reach the targets
    reported: bool


def outside_range(kind: str, mean: float, abs_max: float, smallest: float | None = None,
                  largest: float | None = None) -> dict[str, float]:
    """How far targets of this mean, |max| (and min and max, when measured) lie outside the range of a ``kind``
    output: ``beyond_bound``, ``mean_gap`` and the larger of the two, ``outside``."""
    low, high = BOUNDED_RANGES[kind]
    if smallest is not None and largest is not None:
        beyond = max(0.0, low - smallest, largest - high)
    else:
        beyond = max(0.0, abs_max - max(abs(low), abs(high)))
    gap = max(0.0, low - mean, mean - high)
    return {"beyond_bound": beyond, "mean_gap": gap, "outside": max(beyond, gap)}


def output_range(margin: float = 0.5, patience: int = 2) -> Detector:
    def init() -> OutputRangeState:
        return OutputRangeState(None, 0, False)

    def update(stats: StepStats, state: OutputRangeState):
        if state.reported:
            return (), state
        summary = stats.targets
        if (summary is not None and summary.mean is not None and summary.abs_max is not None
                and math.isfinite(summary.mean) and math.isfinite(summary.abs_max)):
            state = state._replace(targets=_widest(state.targets, summary))
        if state.targets is None or not stats.activations or not stats.finite:
            return (), state
        final = output_activation(stats.activations)
        kind = next((a.kind for a in stats.activations if a.name == final), None)
        if kind not in BOUNDED_RANGES:
            return (), state._replace(streak=0)
        mean, std, abs_max, smallest, largest = state.targets
        outside = outside_range(kind, mean, abs_max, smallest, largest)
        if outside["outside"] < margin:
            return (), state._replace(streak=0)
        streak = state.streak + 1
        if streak < patience:
            return (), state._replace(streak=streak)
        low, high = BOUNDED_RANGES[kind]
        evidence = {"final_activation": final, "activation": kind, "range": [low, high], "targets_mean": mean,
                    "targets_std": std, "targets_abs_max": abs_max, **outside, "margin": margin, "samples": streak,
                    "mse_floor": outside["mean_gap"] ** 2}
        spread = f"|max| {abs_max:.3g}"
        if smallest is not None and largest is not None:
            evidence.update(targets_min=smallest, targets_max=largest)
            spread = f"range [{smallest:.3g}, {largest:.3g}]"
        message = (f"the model's output {kind} ({final}) can only answer in [{low:g}, {high:g}], but the targets "
                   f"have mean {mean:.3g} and {spread}: {outside['outside']:.3g} outside its range, "
                   f"out of reach for any weights (use a linear output, or scale the targets into [{low:g}, {high:g}])")
        finding = Finding("output_out_of_range", Severity.WARNING, stats.step, final, evidence, message)
        return (finding,), OutputRangeState(state.targets, streak, True)

    return Detector("output_range", init, update)


def _widest(kept: tuple | None, summary: TensorSummary) -> tuple:
    """The first summary's mean and std, with the widest |max|, min and max of the summaries seen (min and max only
    while every summary carried them)."""
    def finite(x: float | None) -> float | None:
        return x if x is not None and math.isfinite(x) else None

    smallest, largest = finite(summary.min), finite(summary.max)
    if kept is None:
        std = finite(summary.std)
        return summary.mean, std if std is not None else math.nan, summary.abs_max, smallest, largest
    mean, std, abs_max, kept_min, kept_max = kept
    both = None not in (smallest, largest, kept_min, kept_max)
    return (mean, std, max(abs_max, summary.abs_max), min(kept_min, smallest) if both else None,
            max(kept_max, largest) if both else None)
