"""Repair policies for ``trainguard.Guard(model, optimizer, policy=...)``.

Named: ``"observe"`` (detect and log only), ``"safe"`` (the default: skip non-finite steps and extreme outliers,
clip gradient-norm outliers only), ``"auto"`` (``safe`` plus the escalating chain skip -> clip -> LR back-off ->
rollback -> stop, and trials of the repairs that change the training: a larger Adam epsilon, an LR cut, a restart
at a lower LR after an Adam first step as large as the weights, an LR raise when every update is tiny, ReDo,
a saturated output's weights scaled back, a collapsed sigmoid/tanh stack renormalized on a batch, partial-batch
reweighing; each kept only if the loss beats its trend, else rolled back). Or compose your own, as with optax's
``chain``::

    from trainguard import policies
    policy = policies.chain(policies.skip_if_non_finite(max_consecutive=10), policies.clip_global_norm(1.0))
    guard = trainguard.Guard(model, optimizer, policy=policy)

Each building block is a pure ``init``/``update`` pair (:class:`Policy`) that turns a step's statistics into a
:class:`Plan` of orders; the framework adapter carries them out and logs each action with its measured effect.
When a policy gives up, ``guard.step`` raises :class:`TrainingStopped` with the diagnosis.
"""
from __future__ import annotations

from trainguard.core.policies import (
    LEVELS, POLICY_NAMES, Plan, Policy, Proposal, Refusal, Repair, RollbackOrder, StepDecision, TrainingStopped,
    adam_guard, agc, auto, autoclip, chain, clip_global_norm, clip_outliers, clip_value, equalize_layer_updates,
    escalate, get_policy, lower_lr, lower_lr_from_before, lower_lr_from_start, raise_adam_epsilon, raise_lr,
    recycle_dormant, restore_mode, reweigh_partial_batches, safe, skip_if_non_finite, skip_outliers, step_decision,
    trials, zclip,
)

__all__ = [
    "Plan", "Policy", "Refusal", "RollbackOrder", "StepDecision", "TrainingStopped", "chain", "step_decision",
    "skip_if_non_finite", "skip_outliers", "clip_global_norm", "clip_outliers", "clip_value", "autoclip", "zclip",
    "agc", "escalate", "LEVELS", "adam_guard", "restore_mode", "safe", "auto", "get_policy", "POLICY_NAMES",
    "trials", "Repair", "Proposal", "raise_adam_epsilon", "lower_lr", "lower_lr_from_before", "recycle_dormant",
    "reweigh_partial_batches", "equalize_layer_updates", "lower_lr_from_start", "raise_lr",
]
