"""``equalize_layer_updates``: layer-wise update normalization when the gradient vanishes toward the input
(a trial repair).

In a deep stack of saturating activations the gradient shrinks by the activation's slope (at most 0.25 for a
sigmoid) at every layer, so the first layers' updates are orders of magnitude smaller, relative to their
weights, than the last ones': they barely move and the network answers a near-constant (Glorot & Bengio 2010).
LARS (You et al. 2017, "Large batch training of convolutional networks") gives each layer its own learning rate,
proportional to ``||w|| / ||g||``, so that every layer's update is the same fraction of its weights. Here, as a
trial: each weight tensor's gradient is rescaled so that its gradient-to-weight norm ratio equals the largest one
among the weight tensors (the layer that learns fastest keeps its step; the others are brought up to it, at most
``max_boost`` (1e4) times: 10x beyond the disparity that raises the proposal); biases and 1-d parameters are left
as they are (LARS leaves them out too). Torch only.

Evidence, from the per-layer statistics the adapters sample: AUTOTRAINER's vanishing-gradient ratio (Zhang et al.,
ICSE'21): the first weight tensor's gradient norm at most ``max_ratio`` (1e-3) of the last one's, on ``samples``
(3) sampled steps in a row, while the loss has stalled (the median of the last ``recent`` (10) losses at least
``1 - min_progress`` (98%) of the median of the ``recent`` before). Only the relative part of AUTOTRAINER's rule:
its absolute bound on the first gradient (1e-4) says how small the gradient is, not how unequal the layers are,
which is what the change corrects (the dev corpus' 4-hidden-layer sigmoid MLP of uvadlc issue 119: first/last
1/2970 over 3 samples, first gradient norm 1.9e-4). Replayed on every dev ``observe`` log of the corpus, healthy
programs and fixed twins: the smallest first/last ratio held over 3 sampled steps of a stalled loss is 1/20 in a
healthy run and 1/33 in a fixed twin, 50x and 30x from the bound. A deep sigmoid stack whose top hidden layer has
saturated (ai.stackexchange 16557: first/last 1/19) does not show it, and the change does not help it: its
output stays constant whatever the lower layers learn.

Kept only if the loss then falls measurably below its trend (:mod:`.trial`), over a window of ``window`` (200)
steps: the lower layers must learn features before the output moves (uvadlc, proposed at step 50: 2.31 for ~50
steps, then down to a median of 1.32 over the window's second half and 0.45 at the end, the ReLU twin's 0.31; a
4 x 128 sigmoid stack on 32 features: flat for ~100 steps).
"""
from __future__ import annotations

import math
from typing import NamedTuple

from trainguard.core.detectors._read import finite, kernels
from trainguard.core.diagnosis.fixes import FIXES
from trainguard.core.policies.plan import Findings, Plan
from trainguard.core.policies.stall import StallState, follow, stalled
from trainguard.core.policies.trial import Proposal, Repair
from trainguard.core.stats import StepStats

__all__ = ["equalize_layer_updates", "LayerTrustState", "first_to_last_gradient"]


class LayerTrustState(NamedTuple):
    stall: StallState
    held: tuple[float, ...]  # the first/last gradient-norm ratio of each sampled step in the current run of small ones


def first_to_last_gradient(stats: StepStats) -> float | None:
    """||G_first|| / ||G_last|| of the weight tensors (forward order) on a sampled step; None when there are fewer
    than two with a finite gradient norm, or the first or last one's is exactly 0 (no gradient at all: a dead or
    unused tensor, not a vanishing one)."""
    weights = [w for w in kernels(stats.layers) if finite(w.grad_norm)]
    if len(weights) < 2 or weights[0].grad_norm <= 0 or weights[-1].grad_norm <= 0:
        return None
    return weights[0].grad_norm / weights[-1].grad_norm


def equalize_layer_updates(max_ratio: float = 1e-3, samples: int = 3, recent: int = 10, min_progress: float = 0.02,
                           max_boost: float = 1e4, window: int = 200) -> Repair:
    if not 0 < max_ratio < 1 or samples < 1 or recent < 2 or not 0 < min_progress < 1 or max_boost <= 1 \
            or window < 1:
        raise ValueError("equalize_layer_updates needs 0 < max_ratio < 1, samples >= 1, recent >= 2, "
                         "0 < min_progress < 1, max_boost > 1, window >= 1")
    fix = FIXES["vanishing_gradient"][0]

    def propose(stats: StepStats, findings: Findings, plan: Plan, st: LayerTrustState):
        st = st._replace(stall=follow(st.stall, stats, recent))
        if not stats.layers or not stats.finite:
            return None, st
        ratio = first_to_last_gradient(stats)
        if ratio is None or not math.isfinite(ratio) or ratio > max_ratio:
            return None, st._replace(held=())
        st = st._replace(held=(st.held + (ratio,))[-samples:])
        if len(st.held) < samples or not stalled(st.stall, recent, min_progress):
            return None, st
        params = {"cause": "vanishing_gradient", "max_boost": max_boost, "first_to_last_gradient": max(st.held)}
        return Proposal("vanishing_gradient", params, fix), st

    def apply(plan: Plan, params: dict) -> Plan:
        return plan._replace(layer_trust=params["max_boost"])

    return Repair("equalize_layer_updates", lambda: LayerTrustState(StallState(()), ()), propose, apply,
                  window=window)
