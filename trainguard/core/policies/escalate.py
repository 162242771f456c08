"""The escalating repair chain of ``policy="auto"``: skip -> clip -> LR back-off -> rollback -> stop.

An *episode* begins at the first troubled step: a non-finite loss or gradient, or a loss that diverged, i.e.
rose above ``divergence_factor`` times the median of the recent healthy losses and above the run's starting
loss (so a run that is merely noisy near zero loss is never called diverging). Each level is given ``patience``
steps; when the trouble is still there after them the next level is tried (optax ``apply_if_finite``'s
wrap-count-escalate shape).

An episode that begins with a finite loss jump whose gradient norm is within ``explode_factor`` times the largest
norm of the run's healthy steps (its own range, as ``skip_outliers`` reads it: a blow-up's norm leaves it, 300x on
seed 001's unscaled inputs at the jump) is first watched, with no order at all, while the run learns it
down: each later troubled step finite, its loss and gradient norm at most ``growth`` times the jump's (not
climbing), and a new low of the loss at least every ``fall_within`` steps (falling; over several steps, since a
minibatch loss is noisy and one lucky batch must not end the watch). A jump the run learns back down is a change of
data (a curriculum stage, Bengio et al. 2009; a new task, Goodfellow et al. 2013), not a blow-up; a blow-up keeps
climbing or goes non-finite (OLMo 2 and Takase et al. 2023, "Spike No More", tell a spike that grows from a
level shift). Skipping that jump's updates would freeze the model on data it has still to learn, and the loss,
held up, would climb this chain to a stop. The first step that breaks the rule starts the chain below, as a
non-finite onset does at once:

1. ``skip``: updates of non-finite steps and of steps whose gradient norm is over ``explode_factor`` times the
   recent healthy median are skipped; the optimizer state stays untouched.
2. ``clip``: updates are applied again, clipped to the healthy median gradient norm from before the episode.
3. ``lr_backoff``: the LR multiplier is halved, up to ``max_backoffs`` times, ``patience`` steps apart.
4. ``rollback``: restore the newest in-memory snapshot from before the episode, halve the LR once more and skip
   the updates of the next batches (PaLM, Chowdhery et al. 2022); up to ``max_rollbacks`` times per episode,
   each time to an older snapshot.
5. ``stop``: repair failed; the adapter stops training cleanly with the diagnosis (Keras ``TerminateOnNaN``).

A non-finite step at the skip level after healthy, applied steps back at the run's level (the median loss and
gradient norm of the steps since the last troubled one at most ``growth`` times the medians of the recent healthy
ones: a median, since one heavy minibatch of a healthy run may sit far above) is a new bad batch, not the old
trouble persisting: the skip held, so it is skipped in turn and the level stays (its ``patience`` counts anew).
Batches that are non-finite by themselves (an empty answer averaged to 0/0, an ``inf`` in the data) recur at random
through a run; clipping and halving the LR of the healthy steps between them costs the run its progress (PaLM,
Chowdhery et al. 2022, skips such batches and nothing else; optax ``apply_if_finite`` counts only consecutive
non-finite steps). A blow-up's next step is non-finite too, or elevated, and escalates as before.

After ``hold`` healthy steps in a row the episode is over: the per-step orders lapse and the LR recovers
gradually, never again up to a scale that led to trouble (:mod:`.lr_backoff`): after an episode resolved by
LR back-off, at most half the scale it began at; after one that needed a rollback, at most the scale that held. A healthy run never starts an
episode, so it is not touched at all.
"""
from __future__ import annotations

import math
import statistics
from typing import NamedTuple

import numpy as np

from trainguard.core.actions import Action
from trainguard.core.policies import lr_backoff as lrb
from trainguard.core.policies import rollback as rb
from trainguard.core.policies.plan import Findings, Plan, Policy, RollbackOrder
from trainguard.core.stats import StepStats
from trainguard.core.window import Window, push, values, window

__all__ = ["escalate", "EscalationState", "LEVELS"]

LEVELS = ("watch", "skip", "clip", "lr_backoff", "rollback", "stop")
WATCH, SKIP, CLIP, BACKOFF, ROLLBACK, STOP = range(len(LEVELS))
# Finding codes that name a troubled step better than our own signal does.
_REASONS = ("non_finite", "divergence", "exploding_gradient", "loss_spike")


def _norm(stats: StepStats) -> float:
    """The step's gradient norm; NaN when not measured (a missing norm neither grows nor shrinks)."""
    return math.nan if stats.grad_norm is None else float(stats.grad_norm)


def _loss(stats: StepStats) -> float:
    return math.nan if stats.loss is None else float(stats.loss)


def _median(xs) -> float:
    return statistics.median(xs.tolist() if isinstance(xs, np.ndarray) else xs)  # 10x faster than np on ~32


class EscalationState(NamedTuple):
    level: int  # index into LEVELS
    onset: int | None  # first step of the current episode
    level_since: int  # step the current level was entered
    healthy_streak: int  # healthy steps in a row
    lr: lrb.LrScale
    onset_scale: float  # LR multiplier when the episode began
    backoffs: int  # LR halvings in this episode
    rollbacks: int  # rollbacks in this episode
    restored: int | None  # label of the snapshot last restored in this episode
    reason: str | None  # what the episode is about (a finding code)
    start_losses: tuple[float, ...]  # the run's first finite losses
    losses: Window  # recent healthy losses
    norms: Window  # recent healthy gradient norms
    book: rb.SnapshotBook
    skip_until: int  # after a rollback: last step whose update the adapter skips
    learning_down: bool  # the episode began with a finite jump that the run is learning down: no orders yet
    jump: tuple[float, float]  # (loss, gradient norm) of the jump that began the episode
    low: tuple[float, int]  # (lowest troubled loss since the jump, its step)
    largest_norm: float  # the largest gradient norm of the run's healthy applied steps: the top of its own range
    since_trouble: tuple[tuple[float, float], ...]  # (loss, norm) of the steps since the episode's last troubled one


def escalate(patience: int = 3, hold: int = 10, divergence_factor: float = 20.0, explode_factor: float = 10.0,
             max_backoffs: int = 3, backoff_factor: float = 0.5, max_rollbacks: int = 3, recover_steps: int = 200,
             snapshot_every: int = 100, keep: int = 3, max_skip: int = 500, history: int = 32,
             growth: float = 2.0, fall_within: int = 10) -> Policy:
    if patience < 1 or hold < 1 or history < 3 or fall_within < 1:
        raise ValueError("patience, hold and fall_within must be >= 1, history >= 3")
    if not 0 < backoff_factor < 1:
        raise ValueError(f"backoff_factor must be in (0, 1), got {backoff_factor!r}")

    def init() -> EscalationState:
        return EscalationState(WATCH, None, 0, 0, lrb.lr_scale(), 1.0, 0, 0, None, None, (),
                               window(history), window(history), rb.snapshot_book(snapshot_every, keep), -1,
                               False, (math.nan, math.nan), (math.nan, -1), 0.0, ())

    def trouble(stats: StepStats, findings: Findings, st: EscalationState) -> str | None:
        if not stats.finite:
            code = "non_finite"
        else:
            loss = stats.loss
            if loss is None or len(st.start_losses) < 3 or st.losses.count < 3:
                return None
            # the cheap test first: a healthy run's loss is soon below its start for good
            if not loss > _median(st.start_losses):
                return None
            # "20x the recent median" needs a loss with a scale: a signed loss (a policy gradient, a log-likelihood)
            # has none, and 20x a median near or below 0 would call any positive batch a divergence
            recent = values(st.losses)
            if not (min(recent) > 0 and loss > divergence_factor * _median(recent)):
                return None
            code = "divergence"
        named = [f.code for f in findings if f.code in _REASONS]
        return named[0] if named else code

    def standing(plan: Plan, st: EscalationState) -> Plan:
        plan = plan._replace(skip_non_finite=True, lr_scale=plan.lr_scale * st.lr.scale)
        if st.level == WATCH or st.learning_down or st.norms.count == 0:
            return plan
        baseline = _median(values(st.norms))
        if st.level == SKIP:
            return plan._replace(skip_above=min(plan.skip_above, explode_factor * baseline))
        return plan._replace(clip_norm=min(plan.clip_norm, baseline))

    def escalate_once(step: int, plan: Plan, st: EscalationState) -> tuple[Plan, EscalationState]:
        reason = st.reason
        if st.level == SKIP:
            baseline = _median(values(st.norms)) if st.norms.count else math.inf
            action = Action("clip", step, reason, {"max_norm": baseline, "engaged": True}, {})
            return plan.log(action), st._replace(level=CLIP, level_since=step)
        if st.level == CLIP or (st.level == BACKOFF and st.backoffs < max_backoffs):
            lr = lrb.backoff(st.lr, backoff_factor)
            action = Action("lr_backoff", step, reason, {"factor": backoff_factor, "lr_scale": lr.scale}, {})
            return plan.log(action), st._replace(level=BACKOFF, level_since=step, lr=lr, backoffs=st.backoffs + 1)
        before = (st.onset - 1) if st.restored is None else st.restored - 1
        label = rb.choose(st.book, before)
        if st.rollbacks >= max_rollbacks or label is None:
            why = ("no snapshot from before the trouble is held" if label is None
                   else f"{st.rollbacks} rollbacks did not hold")
            diagnosis = (f"training stopped at step {step}: {reason} since step {st.onset}; skip, clip, LR back-off "
                         f"to x{st.lr.scale:g} and rollback were tried and {why}")
            action = Action("stop", step, reason, {"level": LEVELS[st.level]}, {"diagnosis": diagnosis})
            return plan._replace(stop=diagnosis).log(action), st._replace(level=STOP, level_since=step)
        skip = rb.skip_count(st.onset, step, max_skip=max_skip)
        lr = lrb.backoff(st.lr, backoff_factor)
        action = Action("rollback", step, reason, {"to_step": label, "steps_back": step + 1 - label,
                                                   "skip_batches": skip, "lr_scale": lr.scale}, {})
        plan = plan._replace(rollback=RollbackOrder(label, skip)).log(action)
        return plan, st._replace(level=ROLLBACK, level_since=step + skip, lr=lr, rollbacks=st.rollbacks + 1,
                                 restored=label, book=rb.forget_after(st.book, label), skip_until=step + skip,
                                 healthy_streak=0)

    def lower(stats: StepStats, st: EscalationState) -> tuple[float, int]:
        """The lowest loss since the jump and its step, this step's counted (a NaN never is)."""
        loss = _loss(stats)
        return (loss, stats.step) if stats.finite and loss < st.low[0] else st.low

    def learned_down(stats: StepStats, st: EscalationState) -> EscalationState:
        """The watch of a finite jump, one troubled step on: still learning it down, or the chain starts here."""
        low = lower(stats, st)
        if (stats.finite and _loss(stats) <= growth * st.jump[0] and not _norm(stats) > growth * st.jump[1]
                and stats.step - low[1] < fall_within):
            return st._replace(low=low)
        return st._replace(learning_down=False, level_since=stats.step)

    def back_to_level(st: EscalationState) -> bool:
        """At least one healthy step since the last troubled one, and their median loss and gradient norm at most
        ``growth`` times the medians of the recent healthy ones (the old trouble would show in either; a step not
        applied counts as far off)."""
        if not st.since_trouble or st.losses.count < 3 or st.norms.count < 3:
            return False
        losses, norms = zip(*st.since_trouble)
        return (_median(losses) <= growth * _median(values(st.losses))
                and _median(norms) <= growth * _median(values(st.norms)))

    def update(stats: StepStats, findings: Findings, plan: Plan, st: EscalationState):
        step = stats.step
        if st.level == STOP:
            return standing(plan, st), st
        if step <= st.skip_until:  # a batch skipped after a rollback tells nothing about the restored model
            return standing(plan, st), st
        if stats.finite and stats.loss is not None and len(st.start_losses) < 3:
            st = st._replace(start_losses=st.start_losses + (float(stats.loss),))
        code = trouble(stats, findings, st)
        if code is not None:
            new_bad_batch = st.level == SKIP and not st.learning_down and not stats.finite and back_to_level(st)
            st = st._replace(healthy_streak=0, since_trouble=())
            if st.level == WATCH:
                own_range = not _norm(stats) > explode_factor * st.largest_norm
                st = st._replace(level=SKIP, onset=step, level_since=step, onset_scale=st.lr.scale, backoffs=0,
                                 rollbacks=0, restored=None, reason=code, learning_down=stats.finite and own_range,
                                 jump=(_loss(stats), _norm(stats)), low=(_loss(stats), step))
            elif st.learning_down:
                st = learned_down(stats, st)
            elif new_bad_batch:  # the last skip held: this batch is skipped in turn, nothing more
                st = st._replace(level_since=step)
            elif step - st.level_since >= patience:
                plan, st = escalate_once(step, plan, st)
            return standing(plan, st), st
        if st.level != WATCH:  # a step not applied, or with no norm, is no evidence of health
            applied = stats.applied and stats.finite and stats.loss is not None and math.isfinite(_norm(stats))
            seen = (_loss(stats), _norm(stats)) if applied else (math.inf, math.inf)
            st = st._replace(since_trouble=st.since_trouble + (seen,))
        st = st._replace(healthy_streak=st.healthy_streak + 1)
        if st.learning_down:
            st = st._replace(low=lower(stats, st))
        if stats.applied:
            if stats.loss is not None:
                st = st._replace(losses=push(st.losses, float(stats.loss)))
            if stats.grad_norm is not None and math.isfinite(stats.grad_norm):
                st = st._replace(norms=push(st.norms, float(stats.grad_norm)),
                                 largest_norm=max(st.largest_norm, float(stats.grad_norm)))
        if st.level != WATCH and st.healthy_streak >= hold:
            lr = st.lr
            if st.rollbacks:  # the LR was far too high: never go above the scale that held
                lr = lrb.LrScale(lr.scale, min(lr.ceiling, lr.scale))
            elif st.backoffs:
                lr = lrb.lower_ceiling(lr, st.onset_scale)
            st = st._replace(level=WATCH, onset=None, lr=lr, reason=None, learning_down=False)
        if st.level == WATCH:
            st = st._replace(lr=lrb.recover(st.lr, recover_steps))
            if rb.due(st.book, step + 1):
                plan = plan._replace(snapshot=keep)
                st = st._replace(book=rb.record_snapshot(st.book, step + 1))
        return standing(plan, st), st

    return Policy("escalate", init, update, frozenset({"snapshots"}))
