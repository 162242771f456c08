"""``recycle_dormant``: dead ReLU units re-initialized, as ReDo does (a trial repair).

Sokar et al., "The Dormant Neuron Phenomenon in Deep Reinforcement Learning" (ICML 2023): a unit whose
activation is (near) zero on the data gets no gradient and stays so; ReDo recycles it: its incoming weights are
drawn again from the initial distribution, its outgoing weights set to zero (so the network's output does not
jump), and the optimizer's moments of those weights reset. Here a unit is dormant when the ReLU after it gave no
positive output on the step's batch (``tau = 0`` in the paper), which the adapter reads as an all-zero gradient
row of the layer before the ReLU.

Proposed on a ``dead_relu`` WARNING (its ``where`` names the ReLU module: >= 95% of the layer's units dead, where
almost no gradient flows; docs/severity.md) when the loss has stalled: the median of the last ``recent`` (10)
losses is at least ``1 - min_progress`` (98%) of the median of the ``recent`` before (a network training well with a
share of dead units is left alone). An INFO finding (> 50% dead) is a sparse layer, which healthy ReLU networks
have: the pytorch/examples VAE in the corpus keeps 67% of its first layer dead and its summed loss levels off at
its floor, which the stall test alone would read as stalled. Tried as every trial is (:mod:`.trial`):
kept only if the loss then falls measurably below its trend over the second half of a ``window`` of 500 steps:
a recycled unit starts with zero outgoing weights, which Adam grows by about the LR per step, so its effect on
the loss builds up over hundreds of steps (a one-unit network revived at Adam lr 0.01: 0.69 -> 0.67 in 250
steps, 0.34 by 500). The adapter carries it out on a Linear or Conv layer
followed by the ReLU (in the same ``nn.Sequential``), and says so when the model is built otherwise: the trial
then ends at once, not applied (:mod:`.trial`), and is not proposed again. A dead ReLU on the model's output has
no outgoing weights to zero; the adapters draw it non-negative so that it fires at once (their docstrings say why).

The outlier skip and clip (``skip_outliers``, ``clip_outliers``), statistics of the gradient norm before the
change, are lifted while the change is tried and once it is kept, as ``scale_output_steps`` lifts them: a revived
unit brings a gradient the history never held, and where the dead layer cut every gradient (a dead output unit)
that history is all zeros, its bound 0 and every revived step an "outlier" of it (jvargasmu/population_estimation
#68 re-created in the corpus: the unit recycled at step 25, then 574 of the 575 steps left skipped, final 2.23 as
dead; with the skip lifted 0.045, the Softplus twin 0.027). A non-finite step is still skipped, and fails the trial.
"""
from __future__ import annotations

import math

from trainguard.core.diagnosis.fixes import FIXES
from trainguard.core.findings import Severity
from trainguard.core.policies.plan import Findings, Plan
from trainguard.core.policies.stall import StallState, follow, stalled
from trainguard.core.policies.trial import Proposal, Repair
from trainguard.core.stats import StepStats

__all__ = ["recycle_dormant"]


def recycle_dormant(recent: int = 10, min_progress: float = 0.02, window: int = 500) -> Repair:
    if recent < 2 or not 0 < min_progress < 1 or window < 1:
        raise ValueError("recycle_dormant needs recent >= 2, 0 < min_progress < 1 and window >= 1")
    fix = FIXES["dead_relu"][0]

    def propose(stats: StepStats, findings: Findings, plan: Plan, st: StallState):
        st = follow(st, stats, recent)
        dead = [f for f in findings if f.code == "dead_relu" and f.where and f.severity >= Severity.WARNING]
        if not dead or not stalled(st, recent, min_progress):
            return None, st
        params = {"cause": "dead_relu", "modules": [f.where for f in dead],
                  "dead_fraction": max(float(f.evidence.get("dead_fraction", f.evidence.get("value", 0.0)))
                                       for f in dead)}
        return Proposal("dead_relu", params, fix), st

    def once(plan: Plan, params: dict) -> Plan:
        return plan._replace(recycle_units=tuple(dict.fromkeys(plan.recycle_units + tuple(params["modules"]))))

    def apply(plan: Plan, params: dict) -> Plan:
        return plan._replace(skip_above=math.inf, clip_norm=math.inf)

    return Repair("recycle_dormant", lambda: StallState(()), propose, apply, once=once, window=window)
