"""Clipping policies: the standing clip orders the adapter applies to the gradients before each update.

- :func:`clip_global_norm`: a fixed threshold on the global L2 norm (Pascanu et al. 2013).
- :func:`clip_value`: clamp each entry (Keras ``clipvalue``).
- :func:`autoclip`: AutoClip (Seetharaman et al. 2020), the threshold is the ``percentile``-th percentile of the
  norms seen so far. It clips on most steps by design, so it is for composition, not a default.
- :func:`zclip`: ZClip (Kumar et al. 2025), clip a norm whose z-score against an EMA of the norms exceeds ``z``
  to ``mean + z * std``; it acts only on outliers. ``min_ratio`` also requires the norm to exceed
  ``min_ratio * mean``, so a run with a very steady norm (tiny variance) is not clipped for a wiggle.
- :func:`agc`: unit-wise adaptive gradient clipping (Brock et al. 2021), applied by the adapter per tensor.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from trainguard.core.policies.clipping import EmaStats, autoclip_threshold, ema_push, ema_stats, zclip_threshold
from trainguard.core.policies.plan import Findings, Plan, Policy
from trainguard.core.stats import StepStats
from trainguard.core.window import Window, push, values, window

__all__ = ["clip_global_norm", "clip_value", "autoclip", "AutoClipState", "zclip", "ZClipState", "agc"]


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def clip_global_norm(max_norm: float) -> Policy:
    _positive("max_norm", max_norm)

    def update(stats: StepStats, findings: Findings, plan: Plan, state: tuple):
        return plan._replace(clip_norm=min(plan.clip_norm, max_norm)), state

    return Policy("clip_global_norm", tuple, update)


def clip_value(value: float) -> Policy:
    _positive("value", value)

    def update(stats: StepStats, findings: Findings, plan: Plan, state: tuple):
        return plan._replace(clip_value=min(plan.clip_value, value)), state

    return Policy("clip_value", tuple, update)


def agc(clipping: float = 0.01) -> Policy:
    _positive("clipping", clipping)

    def update(stats: StepStats, findings: Findings, plan: Plan, state: tuple):
        current = plan.agc_clipping
        return plan._replace(agc_clipping=clipping if current is None else min(current, clipping)), state

    return Policy("agc", tuple, update)


class AutoClipState(NamedTuple):
    history: Window  # the most recent gradient norms (AutoClip keeps all; we keep ``history`` of them)


def autoclip(percentile: float = 10.0, history: int = 1000) -> Policy:
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")

    def init() -> AutoClipState:
        return AutoClipState(window(history))

    def update(stats: StepStats, findings: Findings, plan: Plan, state: AutoClipState):
        norm = stats.grad_norm
        if norm is not None and math.isfinite(norm):
            state = AutoClipState(push(state.history, norm))
        threshold = autoclip_threshold(np.asarray(values(state.history)), percentile)
        return plan._replace(clip_norm=min(plan.clip_norm, threshold)), state

    return Policy("autoclip", init, update)


class ZClipState(NamedTuple):
    norms: EmaStats  # EMA mean/variance of the (clipped) norms


def zclip(z: float = 2.5, alpha: float = 0.97, warmup: int = 25, min_ratio: float = 1.0) -> Policy:
    """ZClip. The EMA is fed the clipped norm, as in the paper, so one spike does not inflate the threshold."""
    _positive("z", z)

    def threshold(s: EmaStats) -> float:
        t = zclip_threshold(s, z, warmup)
        return max(t, min_ratio * s.mean) if math.isfinite(t) else t

    def init() -> ZClipState:
        return ZClipState(ema_stats())

    def update(stats: StepStats, findings: Findings, plan: Plan, state: ZClipState):
        norm = stats.grad_norm
        if norm is not None and math.isfinite(norm) and stats.applied:
            state = ZClipState(ema_push(state.norms, min(norm, threshold(state.norms)), alpha, warmup))
        return plan._replace(clip_norm=min(plan.clip_norm, threshold(state.norms))), state

    return Policy("zclip", init, update)
