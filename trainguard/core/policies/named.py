"""The named policies: ``"observe"``, ``"safe"`` (the default) and ``"auto"``.

- ``observe``: detect and log only (no policy at all: the adapter builds no repairer).
- ``safe``: skip non-finite steps and extreme gradient-norm outliers, clip gradient-norm outliers
  (:func:`clip_outliers`, calibrated on healthy runs so that only outliers are touched), warn about
  BatchNorm/Dropout left in eval mode, stop after 20 non-finite steps in a row.
- ``auto``: ``safe`` plus the escalating chain (clip -> LR back-off -> rollback -> stop), StableAdamW-style
  update capping for Adam when its update RMS runs far above 1, the trials of :mod:`.trial` (a larger Adam
  epsilon, a restart from the initial weights at a lower LR when Adam's first update was as large as them, or with
  the gradient clipped when a plain SGD first update was 10x the weights (an exploded gradient), a
  lower LR, ReDo, a saturated output's weights scaled back, layer-wise update equalization when the gradient
  vanishes toward the input, a higher LR when every update is tiny, partial batches reweighed, the output layer's
  steps brought to the scale of off-scale regression targets, a sigmoid/tanh stack whose output collapsed
  renormalized on a batch: each kept only if the loss then beats its trend), and
  BatchNorm/Dropout put back in train mode.

A healthy run is untouched by both ``safe`` and ``auto``: its final weights are bitwise those of an unguarded
run (tests/repair/test_no_false_repair.py).
"""
from __future__ import annotations

from trainguard.core.policies.adam_epsilon import raise_adam_epsilon
from trainguard.core.policies.adam_guard import adam_guard
from trainguard.core.policies.batch_weight import reweigh_partial_batches
from trainguard.core.policies.clip import clip_outliers
from trainguard.core.policies.clip_from_start import clip_from_start
from trainguard.core.policies.desaturate import shrink_saturated_output
from trainguard.core.policies.escalate import escalate
from trainguard.core.policies.layer_trust import equalize_layer_updates
from trainguard.core.policies.lower_lr import lower_lr, lower_lr_from_before
from trainguard.core.policies.lower_lr_from_start import lower_lr_from_start
from trainguard.core.policies.output_scale import scale_output_steps
from trainguard.core.policies.plan import Policy, chain
from trainguard.core.policies.raise_lr import raise_lr
from trainguard.core.policies.redo import recycle_dormant
from trainguard.core.policies.renormalize import renormalize_saturating_layers
from trainguard.core.policies.restore_mode import restore_mode
from trainguard.core.policies.skip import skip_if_non_finite, skip_outliers
from trainguard.core.policies.trial import Repair, trials

__all__ = ["POLICY_NAMES", "safe", "auto", "get_policy"]

POLICY_NAMES = ("observe", "safe", "auto")


def safe(max_consecutive: int | None = 20) -> Policy:
    return chain(skip_if_non_finite(max_consecutive), skip_outliers(), clip_outliers(), restore_mode(restore=False))


def auto(**escalation) -> Policy:
    """``escalation`` goes to :func:`escalate` (patience, snapshot_every, keep, max_rollbacks...)."""
    keep = escalation.get("keep", 3)
    return chain(skip_if_non_finite(None), skip_outliers(), clip_outliers(), escalate(**escalation), adam_guard(),
                 trials(*trial_repairs(), keep=keep + 1), restore_mode(restore=True))


def trial_repairs() -> tuple[Repair, ...]:
    """The repairs ``auto`` tries (:mod:`.trial`), in order of preference when several apply at one step."""
    return (raise_adam_epsilon(), lower_lr_from_start(), clip_from_start(), lower_lr(), lower_lr_from_before(),
            recycle_dormant(), shrink_saturated_output(), equalize_layer_updates(), raise_lr(), reweigh_partial_batches(),
            scale_output_steps(), renormalize_saturating_layers())


def get_policy(policy: str | Policy) -> Policy | None:
    """A named policy, or the user's own :class:`Policy` as is; None for ``"observe"``."""
    if isinstance(policy, Policy):
        return policy
    if policy == "observe":
        return None
    if policy == "safe":
        return safe()
    if policy == "auto":
        return auto()
    raise ValueError(f"unknown policy {policy!r}; expected one of {', '.join(POLICY_NAMES)} "
                     "or a policy built with trainguard.policies.chain(...)")
