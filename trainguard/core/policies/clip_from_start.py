"""``clip_from_start``: a first update many times larger than the weights, from an exploded gradient: the run
started again from its initial weights with the gradient norm clipped (a trial repair).

Exploding gradients in a recurrent network (Pascanu, Mikolov & Bengio, "On the difficulty of training recurrent
neural networks", ICML 2013) can be there from the first step: a recurrent kernel whose gain is above 1 makes the
hidden state, and the gradient, grow with every time step, and a plain SGD step then moves the weights by many times
their own size; the next forward pass overflows (a loss of 235 at step 0, NaN at step 1), and a loop that stops at
its first NaN never gets to a second step. Their remedy is to clip the gradient norm to a threshold; the threshold
here comes from that first step: the one that would have kept its largest weight update at ``target`` (0.1, the
healthy corpus' largest first update, as :mod:`.lower_lr_from_start` uses) of the weights,
``grad_norm * target / largest ratio``. A plain SGD update is the gradient times the learning rate, so clipping the
gradient bounds the update in proportion.

Evidence, at the run's first step only: the typical weight tensor's update-to-weight ratio (the median over the
weight tensors, biases left out, as the ``first_update`` detector reads it) is at least ``min_ratio`` (10: the
step moved the weights by 10x their own norm; the dev corpus' healthy runs reach at most 0.55 there, their fixed
twins 1.34). Not for Adam (a layer with Adam statistics): Adam's first update is ``lr * sign(g)`` whatever the
gradient, which clipping does not change; that case is :mod:`.lower_lr_from_start`'s.

The change is carried out right after that first step, before the next forward pass, on the snapshot taken before
it (the run starts again from its initial weights and optimizer state), and tried as every trial is
(:mod:`.trial`): kept only if the loss falls measurably below its level before the restart, and only if the clip
then engaged on at most ``max_engaged`` (half) of the steps after the restart. Clipping is the remedy for a
gradient that explodes now and then, and stays idle between (Pascanu et al. 2013, sec. 3.2); a clip that engages on
nearly every step acts as a lower learning rate: the gradient is large for good (raw-scale features under plain
gradient descent: a learning rate or a data scale at fault), the loss falls slowly under it, and the run is left
to the escalation chain's LR back-off and rollback instead.
"""
from __future__ import annotations

import math
import statistics
from typing import NamedTuple

from trainguard.core.detectors.first_update import weight_update_ratios
from trainguard.core.diagnosis.fixes import FIXES
from trainguard.core.policies.plan import Findings, Plan
from trainguard.core.policies.trial import Proposal, Repair
from trainguard.core.stats import StepStats

__all__ = ["clip_from_start", "FirstStepSeen"]


class FirstStepSeen(NamedTuple):
    done: bool  # the run's first step was judged: never again
    clip_norm: float | None  # the threshold proposed (None: none)
    steps: int  # applied steps with a finite gradient norm since the proposal ...
    engaged: int  # ... and those whose norm was over the threshold


def _apply(plan: Plan, params: dict) -> Plan:
    return plan._replace(clip_norm=min(plan.clip_norm, params["clip_norm"]))


def clip_from_start(min_ratio: float = 10.0, target: float = 0.1, max_engaged: float = 0.5) -> Repair:
    if not 0 < target < min_ratio or not 0 < max_engaged < 1:
        raise ValueError("clip_from_start needs 0 < target < min_ratio and 0 < max_engaged < 1")
    fix = FIXES["exploding_gradient"][0]

    def propose(stats: StepStats, findings: Findings, plan: Plan, st: FirstStepSeen):
        if st.done:
            norm = stats.grad_norm
            if st.clip_norm is not None and stats.applied and norm is not None and math.isfinite(norm):
                st = st._replace(steps=st.steps + 1, engaged=st.engaged + (norm > st.clip_norm))
            return None, st
        if stats.step < 0:
            return None, st
        st = FirstStepSeen(True, None, 0, 0)
        norm = stats.grad_norm
        if not stats.layers or not stats.finite or norm is None or not math.isfinite(norm) or norm <= 0 \
                or any(layer.adam_update_rms is not None for layer in stats.layers):
            return None, st
        ratios = weight_update_ratios(stats, frozenset(layer.name for layer in stats.layers
                                                       if layer.weight_norm == 0.0))
        if not ratios or statistics.median(ratios) < min_ratio:
            return None, st
        clip_norm = norm * target / max(ratios)
        params = {"cause": "exploding_gradient", "clip_norm": clip_norm, "first_grad_norm": norm,
                  "first_update_ratio": statistics.median(ratios), "restart_from_step": stats.step}
        return Proposal("first_update", params, fix, restore_before=stats.step), st._replace(clip_norm=clip_norm)

    def veto(st: FirstStepSeen) -> str | None:
        if st.steps and st.engaged > max_engaged * st.steps:
            return (f"the clip engaged on {st.engaged} of the {st.steps} steps after the restart: the gradient "
                    "stays large, a learning rate or data scale is at fault, not a passing explosion")
        return None

    return Repair("clip_from_start", lambda: FirstStepSeen(False, None, 0, 0), propose, _apply, veto=veto)
