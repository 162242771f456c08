"""``scale_output_steps``: regression targets far off unit scale under an adaptive optimizer, the output layer's
steps brought to the targets' scale (a trial repair).

With Adam (and its family) each step moves every parameter by about ``lr``, whatever the gradient's size
(Kingma & Ba 2015, sec. 2.1: the step is invariant to a rescaling of the gradient). Targets of scale ``s``
(``y`` up to 1e8 for ``y = x**4``) then leave the output layer ``s`` times too slow: its weights must grow to
about ``s`` and grow by ``lr`` a step, so the network's output stays orders of magnitude below the targets and
the loss does not move. The fix is to standardize the targets (LeCun et al. 1998, "Efficient BackProp", sec. 4.3;
Goodfellow et al. 2016, sec. 12.2.1.1). Online, without changing what the model computes, the output layer is
reparametrized as ``out = s (W' h + b')`` with ``W = s W'``, ``b = s b'`` (the reparametrization argument of
weight normalization, Salimans & Kingma 2016): the output is the same at the moment of the change, and an
adaptive optimizer's step on ``W'`` is ``s`` times its step on ``W``. Its moments are invariant too (``m`` and
``sqrt(v)`` scale alike), so the reparametrization is carried out as a standing order: the update of the output
layer's tensors multiplied by ``s`` (the adapters copy those tensors before the optimizer step and rescale the
difference after it). The weights are not touched, so a rollback to the trial's snapshot undoes it all.

Evidence, from the statistics the adapters sample (a healthy run shows none of it: see docs/repair.md):

* the targets of the first batches are off scale: root mean square ``s >= min_scale`` (10, the ``unscaled_data``
  rule's threshold for targets);
* an adaptive optimizer: the layers carry Adam's update RMS;
* the network's output spread is below ``max_spread`` (1/100) of the targets' spread on ``samples`` (3) sampled
  steps in a row: the output cannot follow the targets;
* the loss barely declined: the median of the last ``recent`` (10) losses is at least ``slow`` (0.7) of the
  median of the run's first ``recent`` (as ``raise_lr`` reads it).

The output layer is the last weight tensor of the sampled layers (forward order) and its bias; the factor is the
gap, the targets' spread over the output's (the widest of the samples): the output layer's weights can then cover
it in about as many steps as they need to move by their own size. The gradients reaching the layers below are
proportional to the output layer's weights, so they grow by orders of magnitude as those follow the targets: by
design, not an explosion. The outlier skip and clip (``skip_outliers``, ``clip_outliers``), statistics of the
gradient norm before the change, are lifted while the change is tried and once it is kept; a non-finite step is
still skipped, and fails the trial. Tried over ``window`` (500) steps (a minibatch MSE on targets of scale 1e7 is
noisy: over 100 steps the loss of a ``y = x**4`` regression fell 1.6x below its trend, within its noise), kept
only if the loss falls below its trend (:mod:`.trial`).
"""
from __future__ import annotations

import math
import re
from typing import NamedTuple

from trainguard.core.detectors._read import is_bias
from trainguard.core.diagnosis.fixes import FIXES
from trainguard.core.policies.plan import Findings, Plan
from trainguard.core.policies.stall import Course, barely_declined, follow_course
from trainguard.core.policies.trial import Proposal, Repair
from trainguard.core.stats import StepStats

__all__ = ["scale_output_steps", "OutputScaleState", "output_layer"]

_PREFIX = re.compile(r"^(.*)[./][^./]*$")


class OutputScaleState(NamedTuple):
    targets: tuple[float, float] | None  # (rms, std) of the first targets summarized
    course: Course  # the run's first and last `recent` finite losses
    narrow: tuple[float, ...]  # the output spread of each sampled step in the current run of far-too-narrow ones


def output_layer(names: tuple[str, ...]) -> tuple[str, ...]:
    """The last weight tensor among ``names`` (forward order) and the biases of the same layer (same prefix)."""
    weights = [i for i, name in enumerate(names) if not is_bias(name)]
    if not weights:
        return ()
    weight = names[weights[-1]]
    return (weight,) + tuple(name for name in names if is_bias(name) and _layer_of(name) == _layer_of(weight))


def _layer_of(name: str) -> str:
    prefix = _PREFIX.match(name)
    return prefix.group(1) if prefix else ""


def scale_output_steps(min_scale: float = 10.0, max_spread: float = 0.01, samples: int = 3, recent: int = 10,
                       slow: float = 0.7, window: int = 500) -> Repair:
    if min_scale <= 1 or not 0 < max_spread < 1 or samples < 1 or recent < 2 or not 0 < slow < 1 or window < 1:
        raise ValueError("scale_output_steps needs min_scale > 1, 0 < max_spread < 1, samples >= 1, recent >= 2, "
                         "0 < slow < 1, window >= 1")
    fix = FIXES["unscaled_data"][0]

    def propose(stats: StepStats, findings: Findings, plan: Plan, st: OutputScaleState):
        st = st._replace(course=follow_course(st.course, stats, recent))
        summary = stats.targets
        if st.targets is None and summary is not None and math.isfinite(summary.mean) and math.isfinite(summary.std):
            st = st._replace(targets=(math.hypot(summary.mean, summary.std), summary.std))
        if not stats.layers or st.targets is None:
            return None, st
        rms, std = st.targets
        spread = next((a.output_std for a in stats.activations if a.kind == "output"), None)
        adaptive = any(layer.adam_update_rms is not None for layer in stats.layers)
        if (rms < min_scale or not adaptive or spread is None or not math.isfinite(spread)
                or spread > max_spread * std):
            return None, st._replace(narrow=())
        st = st._replace(narrow=st.narrow + (spread,))
        if len(st.narrow) < samples or not barely_declined(st.course, recent, slow):
            return None, st
        tensors = output_layer(tuple(layer.name for layer in stats.layers))
        if not tensors:
            return None, st
        widest = max(st.narrow)
        params = {"cause": "unscaled_data", "tensors": list(tensors), "step_scale": std / max(widest, 1e-12),
                  "output_spread": widest, "targets_spread": std}
        return Proposal("output_far_below_targets", params, fix), st

    def apply(plan: Plan, params: dict) -> Plan:
        return plan._replace(update_scale=tuple((name, params["step_scale"]) for name in params["tensors"]),
                             skip_above=math.inf, clip_norm=math.inf)

    return Repair("scale_output_steps", lambda: OutputScaleState(None, Course(), ()), propose, apply, window=window)
