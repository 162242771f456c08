"""An overhead budget: on which steps the guard measures in full, so that its mean self-time stays within a
share of the training step (``Guard(..., budget=0.02)``).

A schedule as plain data, as Cockpit's ``should_compute(step)`` decides per quantity when it is computed, and
sized by cost as Cockpit's presets are ("economy", "business", "full": the user picks a budget, not a list;
Schneider, Dangel & Hennig, "Cockpit: A Practical Debugging Tool for the Training of Deep Neural Networks",
NeurIPS 2021). Here the budget is a share of the step the adapter measures as the run goes, not a fixed list.

A *full* step is the guard's whole every-step work (the gradient-norm pass, the statistics, the detectors, the
policy's decision); a *light* step reads the loss alone (the adapter hands it to the detectors that read the loss
alone, so spikes, divergence and plateaus are judged on every step) and counts the step; a *layers* step is a
full one that also takes the per-layer statistics (every ``layer_every`` full steps' worth, stretched by the
stride as the full steps are).

The stride grows with the run: at step ``t`` it is at most ``t // RAMP_STEPS`` (and ``cap``), so each doubling of
a run's length holds at least ``RAMP_STEPS * ln 2`` (44) full steps until the cap is reached: the first steps, where an
initialisation, a learning rate or the data show their faults and where the detectors and the diagnosis take their
baselines (a calm phase, the starting loss, the first update), are measured densely, as the diagnosis' history keeps
a run's start whole and thins its middle. It costs a run a bounded start: about ``RAMP_STEPS * (1 + ln cap)`` full
steps in its first ``RAMP_STEPS * cap`` steps, where the stride would allow ``RAMP_STEPS`` (that share of the guard's
time is not paid back later: the budget holds from step ``RAMP_STEPS * cap`` on).

With ``light``, ``full`` and ``layers`` the mean self-times of each kind and
``step`` the step's own time, one full step in every ``stride`` costs on average::

    light + (full - light) / stride + (layers - full) / (layer_every * stride)

so the smallest stride within ``HEADROOM * share * step`` is ``((full - light) + (layers - full) / layer_every) /
(HEADROOM * share * step - light)``, rounded up and capped at ``cap``: a gradient-norm or per-layer signal is seen
at most ``cap - 1`` steps late whatever the cost. (``full`` holds the batch of light losses the full step hands to
the detectors, so it grows with the stride; the times are measured again at each full step, and the stride follows.)
Hysteresis: the stride grows as soon as the budget is exceeded, and shrinks only when a smaller one would still fit
within ``SHRINK_MARGIN`` of the budget, so it does not flap on timing noise; each time enters the running means
capped at twice the mean, so a pause between two steps (an evaluation, a checkpoint) or of the interpreter does not
swing the stride. The warm-up steps, and the ``cap`` steps after any sign of trouble (any finding, a non-finite or
skipped step, a repair), are full whatever the budget, the first of them with the per-layer statistics; so is, in
the adapter, a step whose loss is not finite.

The adapter calls :func:`budget_update` after each full step (and once for the light steps before it, with their
mean times), then takes :func:`light_steps` light steps and a full one, with the per-layer statistics when
:func:`layers_due`.
"""
from __future__ import annotations

import math
from typing import NamedTuple

__all__ = ["BudgetState", "budget_init", "budget_update", "light_steps", "layers_due", "required_stride",
           "DEFAULT_SHARE", "DEFAULT_CAP", "WARMUP_STEPS", "RAMP_STEPS", "HEADROOM"]

DEFAULT_SHARE = 0.02  # the guard's default budget: 2% of the training step
DEFAULT_CAP = 48  # a full measurement at least every 48 steps: a gradient's signal is seen <= 47 steps late
WARMUP_STEPS = 10  # full steps before the budget lets any step be light
RAMP_STEPS = 64  # the stride at step t is at most t // 64: each doubling of the run holds >= 44 full steps
COLD_STEPS = 2  # the first steps' times (imports, allocations, cold caches) enter no mean
# The stride is chosen for this share of the budget: the guard's clock, read inside ``step``, misses what only an
# outside clock sees (the call into ``step`` and back, the interpreter caches its work cools for the loop):
# benchmarks/guard_overhead's outside clock reads 8-25% above the guard's own on the 784-512-512-10 MLP; the rest
# is a margin for timing noise.
HEADROOM = 0.7
SHRINK_MARGIN = 0.8  # a smaller stride is taken only when it fits within 80% of the budget
SMOOTHING = 0.1  # weight of a new time in the running means (about the last 10 of a kind)
OUTLIER = 2.0  # a time enters a running mean capped at this multiple of the mean


class BudgetState(NamedTuple):
    share: float  # the budget: mean self-time / step time
    cap: int  # the largest stride
    layer_every: int  # the preset's per-layer cadence, in full steps
    full_until: int  # every step before this one is full (warm-up, trouble)
    stride: int = 1  # a full step every ``stride`` steps
    steps: int = 0  # steps seen
    since_layers: int = 0  # steps since the last per-layer step
    step_s: float | None = None  # mean time of the training step without the guard
    full_s: float | None = None  # mean self-time of a full step
    light_s: float = 0.0  # mean self-time of a light step (0 until one is measured)
    layers_extra_s: float = 0.0  # what the last per-layer step cost above a full step


def budget_init(share: float, cap: int = DEFAULT_CAP, layer_every: int = 25, warmup: int = WARMUP_STEPS) -> BudgetState:
    """The state before the first step: ``warmup`` full steps, then one in every ``stride`` (at most ``cap``)."""
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not (0 < share < 1):
        raise ValueError(f"budget must be a share of the step between 0 and 1 (e.g. 0.02), got {share!r}")
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise ValueError(f"the budget's cap must be a positive integer of steps, got {cap!r}")
    return BudgetState(share=float(share), cap=cap, layer_every=max(1, layer_every), full_until=warmup)


def _stride(state: BudgetState) -> int:
    """The stride in force: the budget's, at most ``steps // RAMP_STEPS`` (see the module docstring)."""
    return max(1, min(state.stride, state.steps // RAMP_STEPS))


def light_steps(state: BudgetState) -> int:
    """How many light steps follow the full step just taken."""
    return 0 if state.steps < state.full_until else _stride(state) - 1


def layers_due(state: BudgetState) -> bool:
    """Whether the next full step also takes the per-layer statistics: every ``layer_every * stride`` steps (the
    preset's cadence at stride 1)."""
    return state.since_layers + light_steps(state) + 1 >= state.layer_every * _stride(state)


def required_stride(state: BudgetState, share: float) -> int:
    """The smallest stride whose mean self-time fits within ``share`` of the step (see the module docstring)."""
    if state.step_s is None or state.full_s is None:
        return 1
    allowed = HEADROOM * share * state.step_s - state.light_s
    extra = max(0.0, state.full_s - state.light_s) + state.layers_extra_s / state.layer_every
    if allowed <= 0:
        return state.cap
    return max(1, min(state.cap, math.ceil(extra / allowed)))


def _mean(old: float | None, new: float, count: int = 1) -> float:
    """The running mean after ``count`` values of mean ``new``, capped at ``OUTLIER`` times the mean."""
    if old is None:
        return new
    return old + (1.0 - (1.0 - SMOOTHING) ** count) * (min(new, OUTLIER * old) - old)


def budget_update(state: BudgetState, kind: str, self_s: float | None, step_s: float | None = None,
                  trouble: bool = False, count: int = 1) -> BudgetState:
    """After ``count`` steps of ``kind`` ("light", "full" or "layers"; more than one for light steps only): their
    mean self-time ``self_s`` and the training step's own mean time ``step_s`` in seconds (None when unknown, e.g.
    at the first step); ``trouble``: a sign of trouble at them (the next ``cap`` steps are full). The times of the
    first ``COLD_STEPS`` steps are left out."""
    steps = state.steps + count
    if state.steps < COLD_STEPS:
        step_s, self_s = None, None
    step_mean = state.step_s if step_s is None or step_s <= 0 else _mean(state.step_s, step_s, count)
    full_s, light_s, layers_extra = state.full_s, state.light_s, state.layers_extra_s
    since_layers = state.since_layers + count
    if self_s is None:
        if kind == "layers":
            since_layers = 0
    elif kind == "light":
        light_s = self_s if light_s == 0.0 else _mean(light_s, self_s, count)
    elif kind == "layers":
        layers_extra = max(0.0, self_s - (full_s if full_s is not None else self_s))
        since_layers = 0
    else:
        full_s = _mean(full_s, self_s)
    full_until = max(state.full_until, steps + state.cap) if trouble else state.full_until
    state = state._replace(steps=steps, since_layers=since_layers, full_until=full_until, step_s=step_mean,
                           full_s=full_s, light_s=light_s, layers_extra_s=layers_extra)
    if kind == "light":
        return state
    grow = required_stride(state, state.share)
    if grow > state.stride:
        return state._replace(stride=grow)
    shrink = required_stride(state, SHRINK_MARGIN * state.share)
    return state._replace(stride=shrink) if shrink < state.stride else state
