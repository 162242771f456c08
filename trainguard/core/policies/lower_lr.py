"""``lower_lr`` and ``lower_lr_from_before``: the learning rate lowered when the loss diverges, exploding or
drifting (trial repairs).

The escalation chain (:mod:`.escalate`) backs the LR off only once the loss is 20x its recent median or
non-finite; a learning rate that is too high can instead make the loss climb for hundreds of steps (an HF
Trainer at lr 1.0: 4.8 -> 170) with no step ever 20x the one before. Both repairs act on the guard's own
``divergence`` finding (WARNING: rising and giving back progress; ERROR: diverged) from step 25 on (a healthy
run's first steps may climb), and are tried as every trial is (:mod:`.trial`):

* ``lower_lr``: the LR multiplied by ``factor`` (0.1, Keras ``ReduceLROnPlateau``'s default factor and the
  "try 10x smaller" of the ``lr_too_high`` fix) from the step after the finding;
* ``lower_lr_from_before``, tried only when the first did not bring the loss down: the same LR cut, on the newest
  snapshot from before the loss began to rise (the finding's evidence counts the steps it has been rising), so
  the progress the run had made is recovered rather than rebuilt at a lower LR (PaLM's rollback, Chowdhery et
  al. 2022, with the LR lowered instead of the batches skipped).

The multiplier rides on the user's scheduler as the back-off of ``escalate`` does (the adapters scale the LR
around the optimizer step only).
"""
from __future__ import annotations

from typing import NamedTuple

from trainguard.core.diagnosis.fixes import FIXES
from trainguard.core.policies.plan import Findings, Plan
from trainguard.core.policies.trial import Proposal, Repair
from trainguard.core.stats import StepStats

__all__ = ["lower_lr", "lower_lr_from_before", "DivergenceSeen"]


class DivergenceSeen(NamedTuple):
    step: int  # the step of the last divergence finding (-1: none)
    onset: int  # the step its rise began


# The first steps of a healthy run can climb (a warm-up, an init far from the data): findings before this step
# are not acted on, as escalate's outlier thresholds warm up over the first 25 steps.
WARMUP = 25


def _watch(stats: StepStats, findings: Findings, st: DivergenceSeen) -> DivergenceSeen:
    if stats.step < WARMUP:
        return st
    for f in findings:
        if f.code == "divergence":
            rising = f.evidence.get("steps")
            rising = int(rising) if isinstance(rising, (int, float)) and rising >= 0 else 0
            return DivergenceSeen(stats.step, stats.step - rising)
    return st


def _apply(plan: Plan, params: dict) -> Plan:
    return plan._replace(lr_scale=plan.lr_scale * params["lr_factor"])


def lower_lr(factor: float = 0.1) -> Repair:
    if not 0 < factor < 1:
        raise ValueError(f"lower_lr factor must be in (0, 1), got {factor!r}")
    fix = FIXES["lr_too_high"][0]

    def propose(stats: StepStats, findings: Findings, plan: Plan, st: DivergenceSeen):
        st = _watch(stats, findings, st)
        if st.step != stats.step:
            return None, st
        return Proposal("divergence", {"cause": "lr_too_high", "lr_factor": factor, "rising_since": st.onset}, fix), st

    return Repair("lower_lr", lambda: DivergenceSeen(-1, -1), propose, _apply)


def lower_lr_from_before(factor: float = 0.1, within: int = 100) -> Repair:
    """Proposed for ``within`` steps after a divergence finding; :func:`trials` tries it only after ``lower_lr``
    failed (``after``)."""
    if not 0 < factor < 1 or within < 1:
        raise ValueError("lower_lr_from_before needs 0 < factor < 1 and within >= 1")
    fix = FIXES["lr_too_high"][0]

    def propose(stats: StepStats, findings: Findings, plan: Plan, st: DivergenceSeen):
        st = _watch(stats, findings, st)
        if st.step < 0 or stats.step - st.step > within:
            return None, st
        return Proposal("divergence", {"cause": "lr_too_high", "lr_factor": factor, "rising_since": st.onset}, fix,
                        restore_before=st.onset), st

    return Repair("lower_lr_from_before", lambda: DivergenceSeen(-1, -1), propose, _apply, after="lower_lr")
