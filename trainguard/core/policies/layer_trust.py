"""``equalize_layer_updates``: layer-wise update normalization when the gradient vanishes toward the input
(a trial repair).

In a deep stack of saturating activations the gradient shrinks by the activation's slope (at most 0.25 for a
sigmoid) at every layer, so the first layers' updates are orders of magnitude smaller, relative to their
weights, than the last ones': they barely move and the network answers a near-constant (seed 001b; Glorot &
Bengio 2010). LARS (You et al. 2017, "Large batch training of convolutional networks") gives each layer its own
learning rate, proportional to ``||w|| / ||g||``, so that every layer's update is the same fraction of its
weights. Here, as a trial: each weight tensor's gradient is rescaled so that its gradient-to-weight norm ratio
equals the largest one among the weight tensors (the layer that learns fastest keeps its step; the others are
brought up to it, at most ``max_boost`` (1000) times); biases and 1-d parameters are left as they are (LARS
leaves them out too).

Proposed on a ``vanishing_gradient`` finding while the loss has stalled (the median of the last ``recent`` (10)
losses at least ``1 - min_progress`` (98%) of the median of the ``recent`` before). Kept only if the loss then
falls measurably below its trend (:mod:`.trial`), over a window of ``window`` (50) steps.

Not in ``policy="auto"``: on the one program of the corpus' development part where it is proposed (a 4-layer
sigmoid MLP, ai.stackexchange 16557, at step 75) the loss rose against its trend (0.96 against 0.93) and the trial
was rolled back. A building block: ``trials(equalize_layer_updates())``.
"""
from __future__ import annotations

from trainguard.core.diagnosis.fixes import FIXES
from trainguard.core.policies.plan import Findings, Plan
from trainguard.core.policies.stall import StallState, follow, stalled
from trainguard.core.policies.trial import Proposal, Repair
from trainguard.core.stats import StepStats

__all__ = ["equalize_layer_updates"]


def equalize_layer_updates(recent: int = 10, min_progress: float = 0.02, max_boost: float = 1000.0,
                           window: int = 50) -> Repair:
    if recent < 2 or not 0 < min_progress < 1 or max_boost <= 1 or window < 1:
        raise ValueError("equalize_layer_updates needs recent >= 2, 0 < min_progress < 1, max_boost > 1, window >= 1")
    fix = FIXES["vanishing_gradient"][0]

    def propose(stats: StepStats, findings: Findings, plan: Plan, st: StallState):
        st = follow(st, stats, recent)
        if not any(f.code == "vanishing_gradient" for f in findings) or not stalled(st, recent, min_progress):
            return None, st
        return Proposal("vanishing_gradient", {"cause": "vanishing_gradient", "max_boost": max_boost}, fix), st

    def apply(plan: Plan, params: dict) -> Plan:
        return plan._replace(layer_trust=params["max_boost"])

    return Repair("equalize_layer_updates", lambda: StallState(()), propose, apply, window=window)
