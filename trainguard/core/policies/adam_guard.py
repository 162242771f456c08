"""``adam_guard``: Adam-family updates whose RMS is far above 1.

Adam's update ``m / (sqrt(v) + eps)`` has an RMS near or below 1 while the second-moment estimate ``v`` keeps
up with the gradients. When gradients grow faster than ``v`` (beta2 close to 1), the update RMS
``sqrt(mean(g^2 / max(v, eps^2)))`` shoots far above 1 and a loss spike follows (Wortsman et al. 2023, "Stable and
low-precision training for large-scale vision-language models"). Their StableAdamW divides each tensor's LR by
``max(1, RMS)``; this policy orders that cap, per tensor, once a sampled step shows an RMS over ``threshold``,
and keeps it for ``duration`` steps after the last such step. Options: raise Adam's epsilon to ``raise_eps``,
and reset the moments of the optimizer on the trigger (SPAM, Huang et al. ICLR 2025, resets moments to
let spiky gradients leave them).

The RMS read is over the entries whose ``v`` the parameters' dtype holds at full precision (``adam_lag_rms``): in
float16, ``0.001 g^2`` is subnormal or 0 for ``|g| < 0.25`` and such a ``v`` does not lag, it lost the increments
the dtype cannot add (a float16 LoRA at eps 1e-4, the reports' fix, read an RMS of 18 at its first step and was
capped for 1000 steps: 4x the unguarded run's loss).

A step whose global gradient norm is within ``range_ratio`` times the largest norm of the run's earlier steps that
did not trigger it does not trigger it: when the data change (a new task, a harder curriculum stage) the gradients
outgrow ``v`` too (the permuted-task switch of the dev corpus: an update RMS of 16 at a norm 4.6x the run's
largest), but they come back into the run's own range, and the run learns the jump down (``skip_outliers``'
docstring has the sources).
"""
from __future__ import annotations

import math
from typing import NamedTuple

from trainguard.core.actions import Action
from trainguard.core.policies.plan import Findings, Plan, Policy
from trainguard.core.stats import StepStats

__all__ = ["adam_guard", "AdamGuardState", "max_update_rms"]


class AdamGuardState(NamedTuple):
    engaged_until: int | None  # last step the cap holds (None: never engaged)
    largest: float  # the largest global gradient norm of the steps that did not trigger it: the run's own range


def max_update_rms(stats: StepStats) -> tuple[float, str] | None:
    """The largest per-tensor Adam update RMS of a sampled step, with the tensor's name: the lag RMS, over the
    entries whose second moment the dtype holds, where the adapter measured it (a float16 v that underflowed
    divides g by eps alone from the first step of a healthy run, which is no v lagging behind growing gradients);
    else the RMS over every entry (a Keras step compiled into a graph, a log written before the lag RMS)."""
    rms = [(layer.lag_rms(), layer.name) for layer in stats.layers if layer.adam_update_rms is not None]
    return max(rms) if rms else None


def adam_guard(threshold: float = 5.0, cap: float = 1.0, duration: int = 1000, raise_eps: float | None = None,
               reset_moments: bool = False, range_ratio: float = 10.0) -> Policy:
    if not threshold > cap > 0:
        raise ValueError("adam_guard needs threshold > cap > 0")

    def init() -> AdamGuardState:
        return AdamGuardState(None, 0.0)

    def update(stats: StepStats, findings: Findings, plan: Plan, state: AdamGuardState):
        worst = max_update_rms(stats)
        norm = stats.grad_norm
        finite_norm = norm is not None and math.isfinite(norm)
        high = worst is not None and worst[0] > threshold
        if high and not (finite_norm and norm <= range_ratio * state.largest):
            if not _engaged(state, stats.step):
                params = {"update_rms": worst[0], "tensor": worst[1], "cap": cap, "threshold": threshold,
                          "raise_eps": raise_eps, "reset_moments": reset_moments}
                plan = plan.log(Action("adam_guard", stats.step, "adam_update_rms", params, {}))
                if reset_moments:
                    plan = plan._replace(reset_moments=True)
            state = AdamGuardState(stats.step + duration, state.largest)
        elif not high and finite_norm:
            state = state._replace(largest=max(state.largest, norm))
        if _engaged(state, stats.step):
            plan = plan._replace(adam_update_cap=cap if plan.adam_update_cap is None else min(cap, plan.adam_update_cap))
            if raise_eps is not None:
                plan = plan._replace(adam_eps=max(raise_eps, plan.adam_eps or 0.0))
        return plan, state

    return Policy("adam_guard", init, update)


def _engaged(state: AdamGuardState, step: int) -> bool:
    # None, not -1, for "never": the plan before the first step is asked for at step -1 (plan.NO_STEP)
    return state.engaged_until is not None and step <= state.engaged_until
