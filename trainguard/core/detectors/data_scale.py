"""``data_scale``: inputs or targets of the first batches far from unit scale.

Rule of thumb (LeCun, Bottou, Orr & Mueller, "Efficient BackProp", 1998, sec. 4.3; Goodfellow et al., "Deep
Learning", 2016, sec. 8.7.1 and 12.2.1.1): standardize inputs, and regression targets, to mean ~0 and variance ~1.
The scale of the inputs sets the curvature of the first layer (the Hessian of a linear layer is E[x x^T]), so
inputs of scale s make a learning rate that is stable at scale 1 about s^2 times too large; targets of scale s
make the loss and the output layer's gradients s to s^2 times larger.

The measure is the root mean square ``sqrt(mean^2 + std^2)`` of a tensor, which catches both a large spread and an
off-centre mean (x in [0, 4] has rms 2.3); the factor is ``max(rms, 1 / rms)``. A factor >= ``info_factor`` (2)
is reported, once per run for each of inputs and targets, at INFO whatever its size (docs/severity.md): the
scale is evidence for the diagnosis (``unscaled_data``), not harm in itself; a run it harms shows that harm in
the symptom detectors (non-finite values, an exploding gradient, divergence).
The adapters summarize floating-point tensors only (class indices and token ids have no scale to fix).
"""
from __future__ import annotations

import math
from typing import NamedTuple

from trainguard.core.detector import Detector
from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import StepStats, TensorSummary

__all__ = ["data_scale", "DataScaleState", "scale_factor"]


class DataScaleState(NamedTuple):
    reported: frozenset[str]  # "inputs" / "targets" already reported


def scale_factor(summary: TensorSummary) -> float | None:
    """How far a tensor is from unit scale: ``max(rms, 1/rms)`` (1.0 for standardized data); None if unknown."""
    mean, std = summary.mean, summary.std
    if mean is None or std is None or not (math.isfinite(mean) and math.isfinite(std)):
        return None
    rms = math.sqrt(mean * mean + std * std)
    if rms == 0.0:
        return None  # a constant zero tensor (padding, an all-zero mask): nothing to rescale
    return max(rms, 1.0 / rms)


def data_scale(info_factor: float = 2.0) -> Detector:
    def init() -> DataScaleState:
        return DataScaleState(frozenset())

    def update(stats: StepStats, state: DataScaleState):
        found = []
        reported = set(state.reported)
        for which, summary in (("inputs", stats.inputs), ("targets", stats.targets)):
            if summary is None or which in reported:
                continue
            factor = scale_factor(summary)
            if factor is None or factor < info_factor:
                continue
            reported.add(which)
            evidence = {"tensor": which, "mean": summary.mean, "std": summary.std, "abs_max": summary.abs_max,
                        "scale_factor": round(factor, 4)}
            message = (f"{which} are not standardized: mean {summary.mean:.3g}, std {summary.std:.3g}, "
                       f"|max| {summary.abs_max:.3g} (about {factor:.3g}x from unit scale)")
            found.append(Finding("data_scale", Severity.INFO, stats.step, which, evidence, message))
        if not found:
            return (), state
        return tuple(found), DataScaleState(frozenset(reported))

    return Detector("data_scale", init, update)
