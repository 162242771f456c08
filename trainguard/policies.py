"""Repair policies for ``trainguard.Guard(model, optimizer, policy=...)``.

Named: ``"observe"`` (detect and log only), ``"safe"`` (the default: skip non-finite steps and extreme outliers,
clip gradient-norm outliers only), ``"auto"`` (``safe`` plus the escalating chain skip -> clip -> LR back-off ->
rollback -> stop). Or compose your own, as with optax's ``chain``::

    from trainguard import policies
    policy = policies.chain(policies.skip_if_non_finite(max_consecutive=10), policies.clip_global_norm(1.0))
    guard = trainguard.Guard(model, optimizer, policy=policy)

Each building block is a pure ``init``/``update`` pair (:class:`Policy`) that turns a step's statistics into a
:class:`Plan` of orders; the framework adapter carries them out and logs each action with its measured effect.
When a policy gives up, ``guard.step`` raises :class:`TrainingStopped` with the diagnosis.
"""
from __future__ import annotations

from trainguard.core.policies import (
    LEVELS, POLICY_NAMES, Plan, Policy, RollbackOrder, StepDecision, TrainingStopped, adam_guard, agc, auto,
    autoclip, chain, clip_global_norm, clip_value, escalate, get_policy, restore_mode, safe, skip_if_non_finite,
    skip_outliers, step_decision, zclip,
)

__all__ = [
    "Plan", "Policy", "RollbackOrder", "StepDecision", "TrainingStopped", "chain", "step_decision",
    "skip_if_non_finite", "skip_outliers", "clip_global_norm", "clip_value", "autoclip", "zclip", "agc",
    "escalate", "LEVELS", "adam_guard", "restore_mode", "safe", "auto", "get_policy", "POLICY_NAMES",
]
