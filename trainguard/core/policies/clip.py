"""Clipping policies: the standing clip orders the adapter applies to the gradients before each update.

- :func:`clip_global_norm`: a fixed threshold on the global L2 norm (Pascanu et al. 2013).
- :func:`clip_value`: clamp each entry (Keras ``clipvalue``).
- :func:`autoclip`: AutoClip (Seetharaman et al. 2020), the threshold is the ``percentile``-th percentile of the
  norms seen so far. It clips on most steps by design, so it is for composition, not a default.
- :func:`zclip`: ZClip (Kumar et al. 2025), clip a norm whose z-score against an EMA of the norms exceeds ``z``
  to ``mean + z * std``; it acts only on outliers. ``min_ratio`` also requires the norm to exceed
  ``min_ratio * mean``, so a run with a very steady norm (tiny variance) is not clipped for a wiggle.
- :func:`agc`: unit-wise adaptive gradient clipping (Brock et al. 2021), applied by the adapter per tensor.
- :func:`clip_outliers`: the ``safe`` default. ZClip's idea (clip only a norm that is an outlier of its own
  history, feed the history the clipped norm) on robust, tail-aware statistics of a window of norms, with
  thresholds calibrated so that healthy runs, heavy-tailed ones included, are never clipped (docs/severity.md).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from trainguard.core.policies.clipping import EmaStats, autoclip_threshold, ema_push, ema_stats, zclip_threshold
from trainguard.core.policies.plan import Findings, Plan, Policy
from trainguard.core.stats import StepStats
from trainguard.core.window import (RobustTrack, Window, push, robust_track, track_push, track_size, track_values,
                                    values, window)

__all__ = ["clip_global_norm", "clip_value", "autoclip", "AutoClipState", "zclip", "ZClipState", "agc",
           "clip_outliers", "ClipOutliersState", "outlier_threshold"]


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


class ClipOutliersState(NamedTuple):
    norms: RobustTrack  # the last `window` gradient norms of applied steps, each at most the threshold it met
    threshold: float  # the current clip threshold (inf: not enough history, or no level)
    largest: float  # the largest norm of an applied step under its threshold: the top of the run's own range


def outlier_threshold(norms: np.ndarray, z: float, ratio: float) -> float:
    """``max(median + z * scale, ratio * median)`` of the norms, where ``scale`` is the larger of the MAD's sigma
    (1.4826 MAD) and the sigma the upper tail implies, ``(q99 - median) / 2.326`` (both are a normal's sigma;
    minibatch gradient norms are heavy-tailed, and the tail one is the larger there). Infinite when the median is
    0: a window of zero gradients (a dead network) has no level to be an outlier of."""
    median = float(np.median(norms))
    if not median > 0:
        return math.inf
    mad_sigma = 1.4826 * float(np.median(np.abs(norms - median)))
    tail_sigma = (float(np.quantile(norms, 0.99)) - median) / 2.326
    return max(median + z * max(mad_sigma, tail_sigma), ratio * median)


def clip_outliers(z: float = 8.0, ratio: float = 10.0, window: int = 512, min_history: int = 100) -> Policy:
    """Clips a gradient norm above :func:`outlier_threshold` of the last ``window`` norms to that threshold.

    Defaults from the healthy runs of docs/severity.md (batch 4 with label noise, a rare class in batches of 8,
    GAN, policy gradient, warm restarts, OneCycle, step decay, and long Adam/AdamW regressions, which the previous
    ``zclip(z=4, min_ratio=3)`` clipped: issue 11, F12): the largest norm met was 0.63x of this threshold. Synthetic heavy tails (lognormal noise of sigma <= 0.4 with a 10x kind of
    batch on up to 30% of steps: 720,000 steps) are never clipped. A real explosion (seed 003: 1.9x, 1.7x, 5.1x,
    then 16x a step) crosses it within two steps once the window holds ``min_history`` (100) norms; before that
    the tail of the window is too loose to judge and only ``skip_outliers`` and the non-finite skip act. The one
    healthy case that is clipped: a curriculum switch whose gradient norm jumps 30-40x (2 clips in two runs of
    three; the skip rule skips more of those steps). A norm within ``ratio`` times the largest norm the run has
    applied unclipped is never clipped: a jump back into the run's own range is a change of data that the run
    learns down (a new task, a harder curriculum stage), as ``skip_outliers`` reads it (its docstring has the
    sources and the dev corpus' figures); the permuted-task switch's 4.6x was clipped on 44 steps. The window's
    quantiles are refreshed when it merges (every ``window // 8`` pushes), so a quiet step costs a tuple append."""
    _positive("z", z)
    _positive("ratio", ratio)

    def refreshed(track: RobustTrack, threshold: float) -> float:
        if track.pending or track_size(track) < min_history:  # between merges: keep the threshold
            return threshold if track_size(track) >= min_history else math.inf
        return outlier_threshold(track_values(track), z, ratio)

    def init() -> ClipOutliersState:
        return ClipOutliersState(robust_track(window), math.inf, 0.0)

    def update(stats: StepStats, findings: Findings, plan: Plan, state: ClipOutliersState):
        norm = stats.grad_norm
        if norm is not None and math.isfinite(norm) and stats.applied:
            track = track_push(state.norms, min(norm, state.threshold))
            largest = max(state.largest, norm) if norm <= state.threshold else state.largest
            state = ClipOutliersState(track, refreshed(track, state.threshold), largest)
        return plan._replace(clip_norm=min(plan.clip_norm, max(state.threshold, ratio * state.largest))), state

    return Policy("clip_outliers", init, update)
