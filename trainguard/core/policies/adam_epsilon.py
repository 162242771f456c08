"""``raise_adam_epsilon``: a larger Adam epsilon, tried when the second-moment estimate collapsed (a trial repair).

Adam's step is ``lr * m / (sqrt(v) + eps)`` (Kingma & Ba 2015, Algorithm 1). The paper's epsilon only keeps the
division defined; its effective step is bounded by about ``lr`` only while ``eps`` is negligible against
``sqrt(v)`` *and* ``v`` keeps up with the gradients. When ``v`` collapses (a long calm phase near the optimum), the
step per unit of gradient ``lr / sqrt(v)`` grows until the iterate no longer fits the valley, the gradient comes
back faster than ``v`` follows (beta2 = 0.999 remembers ~1000 steps) and the loss blows up (seed 002; Wortsman
et al. 2023, "Stable and low-precision training for large-scale vision-language models": spikes follow the update
RMS ``g / sqrt(v)`` running far above 1). In low precision ``v`` underflows to exactly 0 and an ``eps`` such as
1e-10 rounds to 0 in float16, so the first update divides by zero.

Evidence, from the Adam statistics the adapters sample (``adam_sqrt_v_median``, ``adam_sqrt_v_min``):

* **collapse then blow-up**: the median ``sqrt(v_hat)`` fell to ``1 / collapse`` (10) of the largest median seen,
  a gradient-growth finding (``exploding_gradient``, ``loss_spike``, ``adam_update_rms``, ``divergence``) came
  within ``recent`` (10) steps, and the loss is ``rise`` (2) times its median over the ``recent`` steps before;
* **underflow**: the first non-finite step comes right after a sample in which some ``sqrt(v)`` was exactly 0
  and the update RMS was over ``underflow_rms`` (1000; Adam's step is bounded by about ``lr``, an RMS near 1,
  while its denominator holds): the update that broke the weights divided by ``eps`` alone. (A zero ``sqrt(v)``
  alone is common: a parameter that never had a gradient, an unused embedding row.) The change is then tried on
  the newest snapshot from before that update. In float16 every second moment of the first step may underflow
  (``0.001 g^2`` is below float16's smallest subnormal, 6e-8, for ``|g| < 7.7e-3``), the median ``sqrt(v)`` with
  them: Adam is told by its statistics being sampled, not by a positive ``sqrt(v)``.

The change: ``eps`` to ``factor`` (10) times the median ``sqrt(v_hat)``, where the healthy twin of seed 002 puts
it, at least ``floor`` (1e-8, torch's default); after an underflow, ``floor`` alone. The adapter raises it
further to the smallest normal number of the parameters' dtype (6.1e-5 in float16, 2^-14: PyTorch's AMP notes
and Micikevicius et al. 2018 on float16's range), so that the value is held at full precision and carries the
division where ``v`` underflowed; the float16 reports' own fix is 1e-4 (keras-team/keras#11853, the PyTorch
forum's "Adam+Half Precision = NaNs?"). It is tried as any trial is (:mod:`.trial`): kept only if the loss then
falls measurably below its trend, otherwise rolled back; after an underflow the run without the change is
non-finite at every step (the same update divides by zero again), so there the change is kept unless the
window goes non-finite or its loss rises measurably above the trend (``Proposal.breaks_without``).
StableAdamW's update cap (:mod:`.adam_guard`) is the lighter step before it.
"""
from __future__ import annotations

import math
import statistics
from typing import NamedTuple

from trainguard.core.diagnosis.fixes import FIXES
from trainguard.core.policies.plan import Findings, Plan
from trainguard.core.policies.trial import Proposal, Repair
from trainguard.core.stats import StepStats

__all__ = ["raise_adam_epsilon", "AdamEpsilonState"]

_GROWTH = frozenset({"exploding_gradient", "loss_spike", "adam_update_rms", "divergence"})


class AdamEpsilonState(NamedTuple):
    adam: bool  # Adam's statistics were sampled: an Adam-family optimizer
    peak_sqrt_v: float  # the largest median sqrt(v_hat) sampled
    sqrt_v: float  # the last sampled median sqrt(v_hat)
    sqrt_v_min: float  # the last sampled smallest sqrt(v_hat)
    update_rms: float  # the last sampled largest update RMS, g / max(sqrt(v_hat), eps)
    growth_step: int  # the last step with a gradient-growth finding
    losses: tuple[float, ...]  # the last `recent` finite losses
    was_finite: bool


def raise_adam_epsilon(collapse: float = 10.0, rise: float = 2.0, recent: int = 10, factor: float = 10.0,
                       floor: float = 1e-8, underflow_rms: float = 1e3) -> Repair:
    if collapse <= 1 or rise <= 1 or recent < 3 or factor <= 0 or floor <= 0:
        raise ValueError("raise_adam_epsilon needs collapse > 1, rise > 1, recent >= 3, factor > 0, floor > 0")
    fix = FIXES["adam_epsilon"][0]

    def init() -> AdamEpsilonState:
        return AdamEpsilonState(False, 0.0, 0.0, math.inf, 0.0, -(10 ** 9), (), True)

    def propose(stats: StepStats, findings: Findings, plan: Plan, st: AdamEpsilonState):
        if stats.layers:
            medians = [x.adam_sqrt_v_median for x in stats.layers if x.adam_sqrt_v_median is not None]
            mins = [x.adam_sqrt_v_min for x in stats.layers if x.adam_sqrt_v_min is not None]
            rms = [x.adam_update_rms for x in stats.layers if x.adam_update_rms is not None]
            if medians and all(math.isfinite(v) for v in medians):
                median = statistics.median(medians)
                st = st._replace(adam=True, peak_sqrt_v=max(st.peak_sqrt_v, median), sqrt_v=median,
                                 sqrt_v_min=min(mins) if mins else math.inf, update_rms=max(rms, default=0.0))
        if any(f.code in _GROWTH for f in findings):
            st = st._replace(growth_step=stats.step)
        loss, finite = stats.loss, stats.finite and stats.loss is not None and math.isfinite(stats.loss)
        proposal = None
        # an Adam-family optimizer; not "a positive sqrt(v) was seen": in float16 every second moment of the first
        # step can underflow to 0 (0.001 g^2 below 6e-8 for |g| < 7.7e-3), the median with them
        if st.adam:
            eps = max(floor, factor * st.sqrt_v)
            if not finite and st.was_finite and st.sqrt_v_min == 0.0 and st.update_rms >= underflow_rms:
                # where v underflowed there is no sqrt(v) to be large against: the adapter's dtype floor decides
                proposal = Proposal("non_finite", {"cause": "adam_epsilon", "eps": floor, "sqrt_v_median": st.sqrt_v,
                                                   "sqrt_v_min": 0.0, "underflow": True},
                                    fix, restore_before=stats.step - 1, breaks_without=True)
            elif (finite and len(st.losses) >= recent and 0.0 < st.sqrt_v * collapse <= st.peak_sqrt_v
                  and stats.step - st.growth_step <= recent and loss >= rise * statistics.median(st.losses)):
                proposal = Proposal("adam_epsilon", {"cause": "adam_epsilon", "eps": eps, "sqrt_v_median": st.sqrt_v,
                                                     "sqrt_v_peak": st.peak_sqrt_v}, fix)
        if finite and stats.applied:
            st = st._replace(losses=(st.losses + (float(loss),))[-recent:])
        return proposal, st._replace(was_finite=finite)

    def apply(plan: Plan, params: dict) -> Plan:
        plan = plan._replace(adam_eps=max(plan.adam_eps or 0.0, params["eps"]))
        return plan

    return Repair("adam_epsilon", init, propose, apply)
