"""Repair policies: pure ``init``/``update`` pairs with explicit state that turn each step's statistics into
orders for the framework adapter (a :class:`Plan`), composable with :func:`chain` (after optax).

numpy and the standard library only, shared by the torch and Keras adapters.
"""
from trainguard.core.policies.adam_epsilon import raise_adam_epsilon
from trainguard.core.policies.adam_guard import adam_guard
from trainguard.core.policies.batch_weight import reweigh_partial_batches
from trainguard.core.policies.clip import agc, autoclip, clip_global_norm, clip_outliers, clip_value, zclip
from trainguard.core.policies.escalate import LEVELS, escalate
from trainguard.core.policies.layer_trust import equalize_layer_updates
from trainguard.core.policies.lower_lr import lower_lr, lower_lr_from_before
from trainguard.core.policies.lower_lr_from_start import lower_lr_from_start
from trainguard.core.policies.named import POLICY_NAMES, auto, get_policy, safe
from trainguard.core.policies.plan import NO_STEP, Plan, Policy, Refusal, RollbackOrder, StepDecision, TrainingStopped, chain, step_decision
from trainguard.core.policies.raise_lr import raise_lr
from trainguard.core.policies.redo import recycle_dormant
from trainguard.core.policies.restore_mode import restore_mode
from trainguard.core.policies.skip import skip_if_non_finite, skip_outliers
from trainguard.core.policies.trial import Proposal, Repair, trials

__all__ = [
    "NO_STEP", "Plan", "Policy", "Refusal", "RollbackOrder", "StepDecision", "TrainingStopped", "chain", "step_decision",
    "skip_if_non_finite", "skip_outliers", "clip_global_norm", "clip_outliers", "clip_value", "autoclip", "zclip", "agc",
    "escalate", "LEVELS", "adam_guard", "restore_mode", "safe", "auto", "get_policy", "POLICY_NAMES",
    "trials", "Repair", "Proposal", "raise_adam_epsilon", "lower_lr", "lower_lr_from_before", "recycle_dormant",
    "reweigh_partial_batches", "equalize_layer_updates", "lower_lr_from_start", "raise_lr",
]
