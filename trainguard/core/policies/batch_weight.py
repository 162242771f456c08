"""``reweigh_partial_batches``: a loss whose scale depends on the batch size, made to weigh every batch alike
(a trial repair).

A loss already averaged over a batch-related count and divided by the batch size again is inversely proportional
to the batch size: the partial last batch of each epoch weighs ``usual / small`` times a full one, and momentum
carries its kick into the next steps (seed 004; the Stack Overflow answer "Why does my training loss have regular
spikes?"). Once the guard's ``batch_size_loss`` finding has measured the relation (the loss at the small batches
is ``r`` times the full batches'), the loss scales as ``batch_size ** -power`` with
``power = log(r) / log(usual / small)``; the adapter multiplies the gradient of a batch of size ``b`` by
``(b / usual) ** power``, so that a partial batch moves the weights as much as a full one would (``b / usual``
for a loss divided by the batch size twice). The loss value itself is left as it is: the partial batch's loss
still reads high in the curve. The real fix is in the loss function (``batch_size_dependent_loss`` in
docs/causes.md), which the action's ``fix`` says.

Tried as every trial is (:mod:`.trial`), over ``periods`` (4) periods of the small batches, so that several of
them fall in the window.
"""
from __future__ import annotations

import math

from trainguard.core.diagnosis.fixes import FIXES
from trainguard.core.policies.plan import Findings, Plan
from trainguard.core.policies.trial import Proposal, Repair
from trainguard.core.stats import StepStats

__all__ = ["reweigh_partial_batches"]


def reweigh_partial_batches(periods: int = 4) -> Repair:
    if periods < 1:
        raise ValueError("reweigh_partial_batches needs periods >= 1")
    fix = ("the loss function is the real fix: " + FIXES["batch_size_dependent_loss"][0][0].lower()
           + FIXES["batch_size_dependent_loss"][0][1:])

    def propose(stats: StepStats, findings: Findings, plan: Plan, st: None):
        for f in findings:
            if f.code != "batch_size_loss":
                continue
            usual, small = f.evidence.get("usual_batch_size"), f.evidence.get("small_batch_size")
            ratio, period = f.evidence.get("median_ratio"), f.evidence.get("period")
            if not (isinstance(usual, int) and isinstance(small, int) and 0 < small < usual
                    and isinstance(ratio, (int, float)) and ratio > 1):
                return None, st
            power = math.log(ratio) / math.log(usual / small)
            params = {"cause": "batch_size_dependent_loss", "usual_batch_size": usual, "power": power,
                      "small_batch_size": small, "loss_ratio": float(ratio)}
            window = periods * period if isinstance(period, int) and period > 0 else None
            return Proposal("batch_size_loss", params, fix, window=window), st
        return None, st

    def apply(plan: Plan, params: dict) -> Plan:
        return plan._replace(batch_weight=(params["usual_batch_size"], params["power"]))

    return Repair("reweigh_partial_batches", lambda: None, propose, apply)
