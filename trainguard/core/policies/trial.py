"""Trials: a repair that changes the training itself is tried, measured, and kept or undone.

A *repair* (:class:`Repair`) watches the run and proposes a change when its evidence holds (a larger Adam
epsilon, a lower learning rate). :func:`trials` runs the proposals one at a time, as an experiment:

1. the trend before (:func:`trend`): a Theil-Sen line through the log of the last ``history`` (32) losses up to
   the step that raised the proposal, robust to a lone spike (such as the batch that raised it); flat when its
   slope is within the noise; flat at the level of the last losses when they sit far above it (a blow-up in
   progress is assumed to stay, not to grow);
2. snapshot (the adapter's in-memory rollback snapshot, labelled with the first step under the change), then
   the change, as standing orders of the plan;
3. watch ``window`` applied steps;
4. keep the change only if the loss measurably improved against the trend: the median of the log-loss residuals
   to the extrapolated line over the second half of the window (a change's effect may take a while to build) is
   below ``-log(1 + margin)`` and below ``-noise_z`` robust standard deviations of the residuals before, and the
   repair does not veto it (``Repair.veto``: its own evidence says the loss fell for another reason, e.g. a clip
   that engaged on every step acted as an LR cut). Otherwise roll back to the snapshot (bit-exact) and record the
   failed attempt; a non-finite step in the window fails the trial at once. A repair whose trial failed is not
   proposed again. A proposal whose harm is carried by a few samples (``Proposal.by_mean``: an output unit stuck
   on one pattern in ten, which the median ignores by design) is judged instead on the mean loss over the
   window's second half, kept if it is ``margin`` below the mean of the losses before.

A change the adapter could not carry out at all (it reports each order it refused, with the reason: no Linear
layer right before the ReLU, an optimizer without an epsilon) ends its trial right after the step that ordered it,
as *not applied*: nothing changed, so there is nothing to judge and nothing to roll back (the snapshot it took
is an ordinary one from then on), and no training is thrown away. That repair is not proposed again in the run.

Each trial is one ``trial`` action in the run log: the repair, its window, the loss at the start, the trend's
prediction and the loss seen over the window, kept or not (or not applied, and why), and what to change in the
code so the next run needs no repair. A proposal made while the run is already broken (non-finite weights, a
drift that lost the progress made) asks to be carried out on the newest snapshot from before the trouble
(``restore_before``); it is judged against the same trend.

No proposal, no order: a run on which no repair finds its evidence is not touched at all (the trial policy
orders nothing, so a healthy run stays bitwise equal to an unguarded one). Losses must be positive to have a
trend on a log scale; a run with a signed loss gets no trials.
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import numpy as np

from trainguard.core.actions import Action
from trainguard.core.policies.plan import Findings, Plan, Policy, Refusal, RollbackOrder
from trainguard.core.stats import StepStats
from trainguard.core.window import MAD_TO_SIGMA

_LABELS = 16  # snapshot labels remembered (the adapters hold a few)
MIN_TREND_POINTS = 8  # fewer losses before a proposal (or a shorter history asked for): a flat trend

__all__ = ["Proposal", "Repair", "TrialsState", "RunningTrial", "trials", "trend", "improvement", "no_worse"]


class Proposal(NamedTuple):
    """A change a repair asks to try: ``params`` go to its ``apply``; ``fix`` says what to change in the code."""

    reason: str  # the finding code or signal that raised it
    params: dict[str, Any]
    fix: str
    restore_before: int | None = None  # the run is broken: carry the change out on a snapshot labelled <= this
    window: int | None = None  # steps its effect needs to show, when more than the trials' window
    # without the change the run is non-finite at every step (the same update divides by zero again): any finite
    # loss beats that, so the change is kept unless the window goes non-finite or its loss rises above the trend
    breaks_without: bool = False
    # the harm is carried by a few samples (a unit stuck on one pattern in ten), which the median residual ignores:
    # kept when the mean loss over the window's second half is measurably below the mean of the losses before
    by_mean: bool = False


class Repair(NamedTuple):
    """One repair: ``propose(stats, findings, plan, state) -> (Proposal | None, state)`` watches the run;
    ``apply(plan, params) -> plan`` gives the change's standing orders while it is tried or kept."""

    name: str
    init: Callable[[], Any]
    propose: Callable[[StepStats, Findings, Plan, Any], tuple[Proposal | None, Any]]
    apply: Callable[[Plan, dict[str, Any]], Plan]
    after: str | None = None  # tried only once the trial of the repair of this name failed
    once: Callable[[Plan, dict[str, Any]], Plan] | None = None  # one-shot orders, when the trial starts
    window: int | None = None  # steps its effect needs to show, when more than the trials' window
    # ``veto(state) -> why | None``, asked when the loss beat its trend: why the change must not be kept anyway
    # (its own evidence, in the repair's state, says the loss fell for another reason)
    veto: Callable[[Any], str | None] | None = None


class RunningTrial(NamedTuple):
    repair: int  # index into the repairs
    proposal: Proposal
    step: int  # the step that raised it
    label: int  # the snapshot the change started from
    first: int  # the first step whose loss the change can have moved
    slope: float  # the trend before: log loss = intercept + slope * step
    intercept: float
    noise: float  # robust standard deviation of the residuals before
    start_loss: float
    residuals: tuple[float, ...]  # log loss minus the trend, over the window so far
    losses: tuple[float, ...]
    orders: frozenset[str]  # the Plan fields its change sets: refused all, it was not applied
    mean_before: float = math.nan  # the mean of the losses the trend was drawn through


class TrialsState(NamedTuple):
    steps: tuple[int, ...]  # the last `history` applied steps with a positive finite loss ...
    logs: tuple[float, ...]  # ... and the logs of those losses
    signed: bool  # a loss <= 0 was seen: no trend on a log scale, no trials
    labels: tuple[int, ...]  # snapshots ordered so far (label 0: the adapter's initial one)
    running: RunningTrial | None
    kept: tuple[tuple[int, dict[str, Any]], ...]  # (repair index, params) in force
    failed: frozenset[int]  # repairs whose trial failed
    repair_states: tuple[Any, ...]
    unapplied: frozenset[int]  # repairs whose change the adapter could not carry out


def trend(steps: tuple[int, ...], logs: tuple[float, ...], noise_z: float = 2.0,
          recent: int = 3, min_points: int = MIN_TREND_POINTS) -> tuple[float, float, float]:
    """Where the log loss was heading before a change, as a line (slope, intercept) and the noise around it.

    The Theil-Sen line through (step, log loss) (Sen 1968: the median of the pairwise slopes, then the median
    intercept), robust to a lone spike such as the batch that raised the proposal, and the robust standard
    deviation (1.4826 x MAD) of its residuals. Two exceptions:

    * a slope that moves the line less than ``noise_z`` noise deviations over the points is not told apart from
      the noise: the line is flat at their median;
    * when the last ``recent`` losses all sit above the line by more than ``noise_z`` deviations (the median of
      their residuals does), trouble is in progress (a blow-up the line through the calm before it cannot
      see): the line is flat at their median level, i.e. the trouble is assumed to stay, not to grow.

    Fewer than ``min_points`` (8) points (a proposal in the run's first steps): no slope is extrapolated from so
    few, the line is flat at their median."""
    x = np.asarray(steps, dtype=np.float64)
    y = np.asarray(logs, dtype=np.float64)
    if len(x) < 2 or float(np.ptp(x)) == 0.0:
        return 0.0, float(np.median(y)), 0.0
    if len(x) < min_points:
        level = float(np.median(y))
        return 0.0, level, MAD_TO_SIGMA * float(np.median(np.abs(y - level)))
    i, j = np.triu_indices(len(x), k=1)
    apart = x[j] != x[i]
    slope = float(np.median((y[j] - y[i])[apart] / (x[j] - x[i])[apart]))
    intercept = float(np.median(y - slope * x))
    residuals = y - (intercept + slope * x)
    noise = MAD_TO_SIGMA * float(np.median(np.abs(residuals - np.median(residuals))))
    if len(x) > recent and float(np.median(residuals[-recent:])) > noise_z * noise:
        return 0.0, float(np.median(y[-recent:])), noise
    if abs(slope) * float(np.ptp(x)) < noise_z * noise:
        level = float(np.median(y))
        return 0.0, level, MAD_TO_SIGMA * float(np.median(np.abs(y - level)))
    return slope, intercept, noise


def improvement(residuals: tuple[float, ...], noise: float, margin: float, noise_z: float) -> bool:
    """Whether the loss over the window is measurably below the trend: the median residual (log scale) is below
    ``-log(1 + margin)`` and below ``-noise_z`` times the noise of the residuals before."""
    if not residuals:
        return False
    median = float(np.median(residuals))
    return median < -max(math.log1p(margin), noise_z * noise)


def no_worse(residuals: tuple[float, ...], noise: float, margin: float, noise_z: float) -> bool:
    """Whether the loss over the window is not measurably above the trend (the mirror of :func:`improvement`)."""
    return bool(residuals) and float(np.median(residuals)) <= max(math.log1p(margin), noise_z * noise)


def trials(*repairs: Repair, history: int = 32, window: int = 20, margin: float = 0.1, noise_z: float = 2.0,
           keep: int = 1) -> Policy:
    """``keep``: how many snapshots the adapter holds while a trial runs (the other policies' plus this one's)."""
    if history < 1 or window < 1 or margin <= 0 or keep < 1:
        raise ValueError("trials need history >= 1, window >= 1, margin > 0 and keep >= 1")

    def init() -> TrialsState:
        return TrialsState((), (), False, (0,), None, (), frozenset(), tuple(r.init() for r in repairs), frozenset())

    def _window(index: int, proposal: Proposal) -> int:
        return max(window, repairs[index].window or 0, proposal.window or 0)

    def changed_orders(index: int, params: dict[str, Any]) -> frozenset[str]:
        repair, plain = repairs[index], Plan()
        changed = repair.apply(plain, params)
        if repair.once is not None:
            changed = repair.once(changed, params)
        return frozenset(field for field, before, after in zip(Plan._fields, plain, changed)
                         if field != "actions" and after != before)

    def orders(plan: Plan, st: TrialsState) -> Plan:
        for index, params in st.kept:
            plan = repairs[index].apply(plan, params)
        if st.running is not None:
            plan = repairs[st.running.repair].apply(plan, st.running.proposal.params)
            plan = plan._replace(keep_snapshot=st.running.label)
        return plan

    def verdict_params(run: RunningTrial, from_step: int, to_step: int) -> dict[str, Any]:
        return {"repair": repairs[run.repair].name, **run.proposal.params, "snapshot": run.label,
                "from_step": from_step, "to_step": to_step, "fix": run.proposal.fix}

    def record(run: RunningTrial, step: int, kept: bool | None, why: str) -> Action:
        window_loss = float(np.median(run.losses[len(run.losses) // 2:])) if run.losses else None
        middle = run.first + (max(step, run.first) - run.first) * 3 / 4  # of the judged second half
        predicted = math.exp(run.intercept + run.slope * middle)
        params = verdict_params(run, run.first, step)
        effect = {"kept": kept, "why": why, "loss_at_start": run.start_loss, "loss_trend": predicted,
                  "loss_window": window_loss,
                  "improvement": (-float(np.median(run.residuals[len(run.residuals) // 2:])) if run.residuals
                                  else None)}
        return Action("trial", run.step, run.proposal.reason, params, effect)

    def end(plan: Plan, st: TrialsState, step: int, kept: bool, why: str, restore: bool) -> tuple[Plan, TrialsState]:
        run = st.running
        plan = plan.log(record(run, step, kept, why))
        if kept:
            return plan, st._replace(running=None, kept=st.kept + ((run.repair, run.proposal.params),))
        if restore:
            plan = plan._replace(rollback=RollbackOrder(run.label, 0))
            st = st._replace(labels=tuple(x for x in st.labels if x <= run.label))
        return plan, st._replace(running=None, failed=st.failed | {run.repair})

    def start(plan: Plan, st: TrialsState, stats: StepStats, index: int, proposal: Proposal):
        step = stats.step
        if proposal.restore_before is not None:
            older = [x for x in st.labels if x <= proposal.restore_before]
            if not older:
                return plan, st
            label = older[-1]
            plan = plan._replace(rollback=RollbackOrder(label, 0))
            st = st._replace(labels=tuple(x for x in st.labels if x <= label))
        else:
            label = step + 1
            plan = plan._replace(snapshot=max(plan.snapshot, keep))
            st = st._replace(labels=(st.labels + (label,))[-_LABELS:])
        if not st.logs:
            return plan, st
        slope, intercept, noise = trend(st.steps, st.logs, noise_z, min_points=min(history, MIN_TREND_POINTS))
        first = step + 2  # the loss of the next step comes from weights the change has not touched yet
        start_loss = math.exp(intercept + slope * first)
        run = RunningTrial(index, proposal, step, label, first, slope, intercept, noise, start_loss, (), (),
                           changed_orders(index, proposal.params), float(np.mean(np.exp(st.logs))))
        action = Action(repairs[index].name, step, proposal.reason,
                        {**proposal.params, "trial_window": _window(index, proposal),
                         "snapshot": label}, {})
        once = repairs[index].once
        return (once(plan, proposal.params) if once else plan).log(action), st._replace(running=run)

    def update(stats: StepStats, findings: Findings, plan: Plan, st: TrialsState):
        step = stats.step
        proposals = []
        sub_states = []
        for index, (repair, sub) in enumerate(zip(repairs, st.repair_states)):
            proposal, sub = repair.propose(stats, findings, plan, sub)
            sub_states.append(sub)
            if proposal is not None and index not in st.failed and index not in st.unapplied \
                    and all(i != index for i, _ in st.kept) \
                    and (repair.after is None or any(repairs[i].name == repair.after for i in st.failed)):
                proposals.append((index, proposal))
        st = st._replace(repair_states=tuple(sub_states))
        if plan.snapshot:
            st = st._replace(labels=(st.labels + (step + 1,))[-_LABELS:])
        loss = stats.loss
        usable = stats.applied and stats.finite and loss is not None and math.isfinite(loss)
        if usable and loss <= 0.0:
            st = st._replace(signed=True)
        if usable and loss > 0.0 and st.running is None:
            st = st._replace(steps=(st.steps + (step,))[-history:], logs=(st.logs + (math.log(loss),))[-history:])
        run = st.running
        if run is not None:
            if plan.rollback is not None:  # another policy rolls back: the trial's window is gone
                plan, st = end(plan, st, step, False, "another policy rolled back", restore=False)
            elif not stats.finite and step >= run.first:
                plan, st = end(plan, st, step, False, "a non-finite step in the window", restore=True)
            elif usable and step >= run.first and loss > 0.0:
                residual = math.log(loss) - (run.intercept + run.slope * step)
                run = run._replace(residuals=run.residuals + (residual,), losses=run.losses + (float(loss),))
                st = st._replace(running=run)
                if len(run.residuals) >= _window(run.repair, run.proposal):
                    judged = run.residuals[len(run.residuals) // 2:]
                    if run.proposal.breaks_without:
                        kept = no_worse(judged, run.noise, margin, noise_z)
                        why = ("the run trained on, finite and not above its trend (without the change: non-finite)"
                               if kept else "the loss rose measurably above its trend")
                    elif run.proposal.by_mean:
                        mean = float(np.mean(run.losses[len(run.losses) // 2:]))
                        kept = mean < run.mean_before / (1.0 + margin)
                        why = (f"the mean loss {'fell' if kept else 'did not fall'} measurably below its mean "
                               f"before ({run.mean_before:.3g} -> {mean:.3g})")
                    else:
                        kept = improvement(judged, run.noise, margin, noise_z)
                        why = ("the loss fell below its trend" if kept
                               else "the loss did not fall measurably below its trend")
                    veto = repairs[run.repair].veto
                    vetoed = veto(st.repair_states[run.repair]) if kept and veto is not None else None
                    if vetoed is not None:
                        kept, why = False, vetoed
                    plan, st = end(plan, st, step, kept, why, restore=not kept)
        elif proposals and not st.signed and plan.rollback is None:
            index, proposal = proposals[0]
            plan, st = start(plan, st, stats, index, proposal)
        return orders(plan, st), st

    def refused(refusals: tuple[Refusal, ...], st: TrialsState) -> tuple[tuple[Action, ...], TrialsState]:
        """The running trial's change refused, every order of it: the trial ends now, not applied (the standing
        orders the adapter already holds for the next step are the refused ones: they do nothing)."""
        run = st.running
        if run is None or not run.orders:
            return (), st
        whys = {r.order: r.why for r in refusals if r.order in run.orders}
        if whys.keys() != run.orders:  # a part was carried out: it is tried and judged as any change
            return (), st
        params = verdict_params(run, run.step, run.step)
        effect = {"applied": False, "kept": False,
                  "why": "not applied: the adapter could not carry it out: " + "; ".join(dict.fromkeys(whys.values()))}
        verdict = Action("trial", run.step, run.proposal.reason, params, effect)
        return (verdict,), st._replace(running=None, unapplied=st.unapplied | {run.repair})

    def closing(st: TrialsState) -> tuple[Action, ...]:
        """The run ended inside a trial's window: the change stands as it is, unjudged, and the log says so."""
        run = st.running
        if run is None:
            return ()
        window = _window(run.repair, run.proposal)
        why = (f"open at the end of the run: {len(run.residuals)} of its {window} steps measured; the change "
               f"stands as it is, not judged")
        action = record(run, run.first + max(len(run.losses) - 1, 0), None, why)
        return (action._replace(effect={**action.effect, "open": True}),)

    return Policy("trials(" + ",".join(r.name for r in repairs) + ")", init, update, frozenset({"snapshots"}),
                  refused, closing)
