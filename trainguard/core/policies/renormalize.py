"""``renormalize_saturating_layers``: a stack of sigmoid/tanh layers whose output has collapsed to a constant, each
hidden layer's pre-activations brought back to mean 0 and unit variance on a batch (a trial repair).

In a deep stack of saturating activations started at Glorot's scale, the differences between samples shrink at
every layer (the activation's slope, at most 1/4 for a sigmoid, times the weights), so the top layers see nearly
the same input for every sample and the network answers a constant: the mean of the targets (Glorot & Bengio
2010; seed 001, experiment 3: 0.573, 0.574, 0.574 for inputs 1, 2, 3). No step size brings the signal back (the
LR x3-x100 and the layer-wise update equalization of :mod:`.layer_trust` were tried on that seed: predictions
still span 0.00 of the targets' 1.0). The data-dependent initializations restore it: LSUV (Mishkin & Matas,
"All you need is a good init", ICLR 2016) scales each layer, in forward order, so that its output has unit
variance on a minibatch; weight normalization's data-dependent initialization (Salimans & Kingma 2016, sec. 3)
sets each unit's scale and bias so that its pre-activation has mean 0 and variance 1 over a minibatch. Here the
latter, once, on the layer feeding each hidden sigmoid/tanh, on the next training batch, layer after layer in
forward order (each layer normalized on the output of the ones below it as they now are): each unit's incoming
weights are divided by its pre-activations' standard deviation over the batch and its bias shifted by their
mean. This changes what the model computes at that moment (the point: a constant function is what is wrong);
the trial judges whether the loss then falls (:mod:`.trial`).

Evidence: ``activation_health``'s ``output_collapse`` WARNING (the output's spread below 0.1% of the targets':
a constant to three digits, reached by no healthy run or fixed twin of the corpus) while the sampled activations
hold hidden sigmoid/tanh layers (the model's own output non-linearity aside). The finding comes once per episode,
so the evidence is held from then on, while the output stays collapsed (until a sampled output's spread has
grown past twice its value at the finding, the detector's own sign of a model that learns): a trial of another
repair running at that step, or proposed first on it, does not lose it. The adapter carries it out on the layer
right before each of them (torch: a Linear; Keras: the Dense that computes the layer's pre-activations, on the
last training batch the host holds). Kept only if the loss falls below its trend over ``window`` (100) steps.
The outlier skip and clip are lifted while it is tried and once it is kept, as ``recycle_dormant`` lifts them
(:mod:`.redo`): their statistics are the vanished gradient's, and a stack that passes its gradient down again
brings norms that history never held (seed 001 in Keras on TensorFlow: every step after the renormalization
skipped as an outlier, the loss 0.12 -> 1.0). A non-finite step is still skipped, and fails the trial.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from trainguard.core.detectors.activation_health import output_activation
from trainguard.core.diagnosis.fixes import FIXES
from trainguard.core.findings import Severity
from trainguard.core.policies.plan import Findings, Plan
from trainguard.core.policies.trial import Proposal, Repair
from trainguard.core.stats import StepStats

__all__ = ["renormalize_saturating_layers", "RenormalizeState"]

_SATURATING = ("sigmoid", "tanh")


class RenormalizeState(NamedTuple):
    hidden: tuple[str, ...]  # the hidden sigmoid/tanh modules of the last sampled step, in forward order
    # (output record, its spread at the output_collapse WARNING) while the output stays collapsed; else None
    collapsed: tuple[str, float] | None = None


def renormalize_saturating_layers(window: int = 100) -> Repair:
    if window < 1:
        raise ValueError("renormalize_saturating_layers needs window >= 1")
    fix = FIXES["vanishing_gradient"][0]

    def propose(stats: StepStats, findings: Findings, plan: Plan, st: RenormalizeState):
        if stats.activations:
            final = output_activation(stats.activations)
            st = st._replace(hidden=tuple(a.name for a in stats.activations
                                          if a.kind in _SATURATING and a.name != final))
        record = {a.name: a.output_std for a in stats.activations}
        finding = next((f for f in findings if f.code == "output_collapse" and f.severity >= Severity.WARNING), None)
        if finding is not None:
            st = st._replace(collapsed=(finding.where, record.get(finding.where, math.nan)))
        elif st.collapsed is not None and record.get(st.collapsed[0]) is not None:
            spread = record[st.collapsed[0]]
            if math.isfinite(spread) and math.isfinite(st.collapsed[1]) and spread > 2.0 * st.collapsed[1]:
                st = st._replace(collapsed=None)  # the output spreads out again: the model learns
        if st.collapsed is None or not st.hidden:
            return None, st
        return Proposal("output_collapse", {"cause": "vanishing_gradient", "modules": list(st.hidden)}, fix), st

    def once(plan: Plan, params: dict) -> Plan:
        return plan._replace(renormalize=tuple(params["modules"]))

    def apply(plan: Plan, params: dict) -> Plan:
        return plan._replace(skip_above=math.inf, clip_norm=math.inf)

    return Repair("renormalize_saturating_layers", lambda: RenormalizeState(()), propose, apply, once=once,
                  window=window)
