"""``lower_lr_from_start``: Adam's first update as large as the weights: the run started again from its initial
weights at a learning rate a power of ten lower (a trial repair).

With bias correction, Adam's first step is ``m1 / sqrt(v1) = sign(g)`` per element (Kingma & Ba 2015, sec. 2-3):
every weight moves by the learning rate itself, whatever the data's or the gradient's scale. The update-to-weight
ratio of that step measures the learning rate against the weights alone (``adam_first_update`` in
docs/causes.md): 0.1 is the largest of the healthy corpus (lr 2e-3 on GPT-2's initial weights), about 1e-3 is
Karpathy's healthy ratio (CS231n, "Neural Networks Part 3"). A first update of ``min_ratio`` (1) or more has
rewritten the initial weights by as much as their own size; when the loss then rose (the median of the next
``after`` (3) losses over ``1 + min_rise`` (1.1) times the first, or one of them non-finite), nothing the run
does later gets that initialization back, and a lower learning rate from here on keeps the damage.

So the change is carried out on the snapshot taken before the first update (the adapters take it before step 0):
the run starts again from its initial weights, optimizer state and scheduler, at the learning rate multiplied by
the largest power of ten that brings that first update's ratio to at most ``target`` (0.1, the healthy corpus'
largest): the usual grid of a learning-rate search (Bengio 2012, "Practical recommendations for gradient-based
training of deep architectures", sec. 3.1.1: a log scale). Tried as every trial is (:mod:`.trial`): kept only if
the restarted run's loss falls measurably below the trend of the loss before the restart.

Adam only (a layer with ``adam_update_rms``), and only where that RMS is at most ``max_rms`` (1.5): far above 1 the
second moment underflowed (float16, an epsilon too small), which is ``adam_epsilon``'s evidence, not the learning
rate's.
"""
from __future__ import annotations

import math
import statistics
from typing import NamedTuple

from trainguard.core.detectors.first_update import SIGN_STEP_RMS, adam_first_update_ratio
from trainguard.core.diagnosis.fixes import FIXES
from trainguard.core.policies.lower_lr import _apply
from trainguard.core.policies.plan import Findings, Plan
from trainguard.core.policies.trial import Proposal, Repair
from trainguard.core.stats import StepStats

__all__ = ["lower_lr_from_start", "FirstRestartState"]


class FirstRestartState(NamedTuple):
    first_step: int | None  # the run's first step (None: none seen yet)
    ratio: float | None  # the typical weight tensor's update ratio at the first step (None: not an Adam step)
    losses: tuple[float, ...]  # the losses of the first 1 + `after` steps (nan: non-finite)
    done: bool  # the evidence was judged (proposed or not): never again


def lower_lr_from_start(min_ratio: float = 1.0, target: float = 0.1, after: int = 3, min_rise: float = 0.1,
                        max_rms: float = SIGN_STEP_RMS) -> Repair:
    if not 0 < target < min_ratio or after < 1 or min_rise <= 0 or max_rms <= 0:
        raise ValueError("lower_lr_from_start needs 0 < target < min_ratio, after >= 1, min_rise > 0, max_rms > 0")
    fix = FIXES["lr_too_high"][0]

    def propose(stats: StepStats, findings: Findings, plan: Plan, st: FirstRestartState):
        if st.done or stats.step < 0:
            return None, st
        if st.first_step is None:
            measured = adam_first_update_ratio(stats, max_rms)  # the first_update detector's measure
            if measured is None or measured["median_update_ratio"] < min_ratio:
                return None, st._replace(done=True)
            st = FirstRestartState(stats.step, measured["median_update_ratio"], (), False)
        loss = stats.loss if stats.loss is not None and stats.finite and math.isfinite(stats.loss) else math.nan
        st = st._replace(losses=st.losses + (float(loss),))
        if len(st.losses) < 1 + after:
            return None, st
        st = st._replace(done=True)
        first, later = st.losses[0], st.losses[1:]
        rose = math.isfinite(first) and first > 0 and (
            any(math.isnan(x) for x in later) or statistics.median(later) > (1 + min_rise) * first)
        if not rose:
            return None, st
        factor = 10.0 ** math.floor(math.log10(target / st.ratio))
        params = {"cause": "lr_too_high", "lr_factor": factor, "first_update_ratio": st.ratio,
                  "restart_from_step": st.first_step}
        return Proposal("adam_first_update", params, fix, restore_before=st.first_step), st

    return Repair("lower_lr_from_start", lambda: FirstRestartState(None, None, (), False), propose, _apply)
