"""The repair-policy protocol: a pure ``init``/``update`` pair with explicit state, after optax's transforms.

A policy reads one step's :class:`StepStats` and the findings the detectors raised on it, and returns a
:class:`Plan`: the orders the framework adapter carries out. Standing orders (skip non-finite steps, the
clipping thresholds, the LR scale) hold for the next steps; one-shot orders (roll back, take a snapshot, reset
Adam moments, put modules back in train mode, stop) are carried out once, right after the step that raised them.

Each step the runner starts from ``Plan()`` (do nothing) and threads it through the policies of a
:func:`chain`, as optax threads updates: each policy may only tighten what the ones before it ordered.
A policy never mutates its state; it returns a new one. Before the first step the runner primes the plan with
:data:`NO_STEP` (a step -1 that measured nothing), so standing orders such as a fixed clip hold from step 0.
An order the adapter could not carry out at all comes back as a :class:`Refusal` (the optimizer has no epsilon,
no Linear layer feeds the ReLU); a policy that cares hears it through its ``refused`` function, right after
the step (a trial of a change that was never made ends there, unapplied).

>>> from trainguard.core.policies import skip_if_non_finite
>>> from trainguard.core.stats import StepStats
>>> policy = skip_if_non_finite(max_consecutive=2)
>>> plan, state = policy.update(StepStats(step=0, loss=1.0), (), Plan(), policy.init())
>>> plan.skip_non_finite
True
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

from trainguard.core.actions import Action
from trainguard.core.findings import Finding
from trainguard.core.stats import StepStats

__all__ = ["Plan", "RollbackOrder", "Refusal", "Policy", "chain", "step_decision", "StepDecision", "TrainingStopped",
           "NO_STEP"]

INF = math.inf
NO_STEP = StepStats(step=-1)  # what a policy sees once, before the first step, to give its first plan


class TrainingStopped(RuntimeError):
    """Raised by ``guard.step`` when a repair policy gives up (Keras ``TerminateOnNaN``, with the reason).

    ``diagnosis`` says what went wrong and what was tried; the run log holds the actions and ends with status
    ``"stopped"``. Catch it to end a training loop cleanly::

        try:
            for x, y in loader:
                ...
                guard.step(loss)
        except trainguard.TrainingStopped as stop:
            print(stop.diagnosis)
    """

    def __init__(self, diagnosis: str, step: int | None = None):
        super().__init__(diagnosis)
        self.diagnosis = diagnosis
        self.step = step


class RollbackOrder(NamedTuple):
    """Restore the snapshot labelled ``label`` (taken just before step ``label``'s update), then skip the
    updates of the next ``skip_batches`` batches (PaLM's rollback-and-skip)."""

    label: int
    skip_batches: int


class Plan(NamedTuple):
    """What the adapter does from the next step on. The default does nothing at all."""

    # Standing orders.
    skip_non_finite: bool = False
    skip_above: float = INF  # skip the update when the global gradient norm exceeds this
    clip_norm: float = INF  # rescale gradients to at most this global L2 norm
    clip_value: float = INF  # clamp each gradient entry to [-clip_value, clip_value]
    agc_clipping: float | None = None  # unit-wise adaptive clipping factor (Brock et al. 2021)
    lr_scale: float = 1.0  # multiplier on every param group's LR, applied around the optimizer step only
    adam_update_cap: float | None = None  # cap each tensor's Adam update RMS (StableAdamW)
    adam_eps: float | None = None  # raise Adam's epsilon to at least this
    # rescale the gradient of a batch of size b by (b / usual) ** power: (usual batch size, power)
    batch_weight: tuple[int, float] | None = None
    # LARS-style: each weight tensor's gradient brought up to the largest gradient-to-weight ratio, at most this much
    layer_trust: float | None = None
    # each named tensor's update multiplied by its factor (an output layer reparametrized: output_scale.py)
    update_scale: tuple[tuple[str, float], ...] = ()
    keep_snapshot: int | None = None  # the label of a snapshot newer ones must not evict (a running trial's)
    # One-shot orders.
    snapshot: int = 0  # take a snapshot now, labelled with the next step, keeping this many in all (0: none)
    rollback: RollbackOrder | None = None
    reset_moments: bool = False
    restore_modules: tuple[str, ...] = ()
    recycle_units: tuple[str, ...] = ()  # ReLU modules whose dormant units are re-initialized (ReDo)
    desaturate: tuple[str, ...] = ()  # tanh/sigmoid modules whose saturated units' incoming weights are scaled back
    # hidden tanh/sigmoid modules whose layers' pre-activations are brought to mean 0, variance 1 on the next batch
    renormalize: tuple[str, ...] = ()
    stop: str | None = None
    # Decisions taken on this step, for the run log; the adapter fills their ``effect``.
    actions: tuple[Action, ...] = ()

    def log(self, action: Action) -> Plan:
        return self._replace(actions=self.actions + (action,))

    @property
    def acts_per_step(self) -> bool:
        """Whether the adapter has any work before the optimizer step."""
        return (self.skip_non_finite or self.skip_above < INF or self.clip_norm < INF or self.clip_value < INF
                or self.agc_clipping is not None or self.lr_scale != 1.0 or self.adam_update_cap is not None
                or self.batch_weight is not None or self.layer_trust is not None or bool(self.update_scale))


Findings = tuple[Finding, ...]


class Refusal(NamedTuple):
    """An order the adapter could not carry out at all (nothing of it was done), as it reports it: ``order`` is
    the :class:`Plan` field (``"adam_eps"``, ``"recycle_units"``, ``"batch_weight"``...), ``why`` the reason."""

    order: str
    why: str


class Policy(NamedTuple):
    name: str
    init: Callable[[], Any]
    update: Callable[[StepStats, Findings, Plan, Any], tuple[Plan, Any]]
    # What the adapter must prepare: "snapshots" (an initial snapshot, labelled 0, before the first update).
    needs: frozenset[str] = frozenset()
    # ``refused(refusals, state) -> (actions, state)``: told, right after the step, which of the plan's orders the
    # adapter could not carry out (a trial of such a change ends unapplied); the actions go to the run log.
    refused: Callable[[tuple[Refusal, ...], Any], tuple[tuple[Action, ...], Any]] | None = None
    # ``closing(state) -> actions``: at the end of the run, what is still open (a trial the run ended inside the
    # window of), for the run log.
    closing: Callable[[Any], tuple[Action, ...]] | None = None


def chain(*policies: Policy) -> Policy:
    """Runs several policies on each step, in order, each seeing the plan of the ones before it.
    The state is the tuple of their states (optax ``chain``)."""

    def init() -> tuple[Any, ...]:
        return tuple(p.init() for p in policies)

    def update(stats: StepStats, findings: Findings, plan: Plan, state: tuple[Any, ...]):
        new_states = []
        for policy, sub_state in zip(policies, state):
            plan, sub_state = policy.update(stats, findings, plan, sub_state)
            new_states.append(sub_state)
        return plan, tuple(new_states)

    def refused(refusals: tuple[Refusal, ...], state: tuple[Any, ...]):
        told: tuple[Action, ...] = ()
        new_states = []
        for policy, sub_state in zip(policies, state):
            if policy.refused is not None:
                actions, sub_state = policy.refused(refusals, sub_state)
                told += actions
            new_states.append(sub_state)
        return told, tuple(new_states)

    def closing(state: tuple[Any, ...]) -> tuple[Action, ...]:
        return tuple(a for policy, sub_state in zip(policies, state) if policy.closing is not None
                     for a in policy.closing(sub_state))

    needs = frozenset().union(*(p.needs for p in policies))
    listens = any(p.refused is not None for p in policies)
    open_at_end = any(p.closing is not None for p in policies)
    return Policy("chain(" + ",".join(p.name for p in policies) + ")", init, update, needs,
                  refused if listens else None, closing if open_at_end else None)


class StepDecision(NamedTuple):
    apply: bool
    clip_coef: float  # factor the gradients are multiplied by (1.0: untouched)
    reason: str | None  # "non_finite", "grad_outlier" when skipped, "clip" when clipped


def step_decision(plan: Plan, finite: bool, grad_norm: float, eps: float = 1e-6) -> StepDecision:
    """What the standing orders do to one step, given its finiteness and global gradient norm.

    This is the reference the adapters implement (on GPU without a host sync, as tensors).
    """
    if plan.skip_non_finite and not finite:
        return StepDecision(False, 1.0, "non_finite")
    if grad_norm > plan.skip_above:
        return StepDecision(False, 1.0, "grad_outlier")
    if finite and grad_norm > plan.clip_norm:
        return StepDecision(True, plan.clip_norm / (grad_norm + eps), "clip")
    return StepDecision(True, 1.0, None)
