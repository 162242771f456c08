"""The plain records the Keras wrapper and its host side exchange: the standing orders the wrapper executes
(:class:`Orders`), what one update measured (:class:`StepRecord`), and the wrapper's host-side state
(:class:`HostSide`). Kept apart so that the optimizer, the session and the effector import them without
importing each other."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from trainguard.core.policies.plan import Plan

__all__ = ["Orders", "StepRecord", "HostSide", "standing_orders"]


class Orders(NamedTuple):
    """The standing orders the wrapper executes, a host-side mirror of its ``tg_*`` variables."""

    skip_non_finite: bool = False
    skip_above: float = math.inf
    clip_norm: float = math.inf
    clip_value: float = math.inf
    lr_scale: float = 1.0
    skip_next: int = 0  # skip this many upcoming updates (rollback-and-skip)
    # each named variable's update multiplied by its factor (eager updates only: a host-side order, no tg_ variable)
    update_scale: tuple[tuple[str, float], ...] = ()


def standing_orders(plan: Plan, skip_next: int = 0) -> Orders:
    return Orders(skip_non_finite=plan.skip_non_finite, skip_above=plan.skip_above, clip_norm=plan.clip_norm,
                  clip_value=plan.clip_value, lr_scale=plan.lr_scale, skip_next=skip_next,
                  update_scale=plan.update_scale)


class StepRecord(NamedTuple):
    """What one update measured: host numbers (eager updates) or arrays read from the state (compiled ones)."""

    loss: Any  # float, scalar array, or None
    grad_norms: Any  # one raw norm per trainable variable, in the optimizer's order (0 where no gradient)
    skipped: Any  # bool
    clipped: Any  # bool
    grads: list | None  # the raw gradients, kept on the steps the guard samples per layer
    index: int | None = None  # the update's number when known (compiled steps, where some are not seen)
    # Compiled steps keep no raw gradients: their per-tensor (mean |g|, zero fraction, Adam update RMS), measured
    # in the graph on sampled steps (NaN where not measured).
    grad_stats: tuple[Any, Any, Any] | None = None


@dataclass
class HostSide:
    """Plain Python state of the wrapper, kept apart so Keras' attribute tracking leaves it alone."""

    pending: list[StepRecord] = field(default_factory=list)
    keep_grads: bool = False  # set by the guard on the steps it samples per layer
    loss: Any = None  # the loss seen by scale_loss in this step (fit), or passed to apply (custom loops)
    session: Any = None  # the host side that reads the records (KerasSession)
    session_args: dict | None = None  # how to create it on the first update, for custom loops
    traced_state: list | None = None  # JAX: the optimizer-state list of the step being traced (see callback)
    loss_in_graph: bool = False  # a compiled step writes the batch loss into the wrapper's tg_loss
    grad_stats_in_graph: bool = False  # a TensorFlow graph step measures its gradients' statistics (tg_grad_stats)
    made_by_guard: bool = False  # wrapped by the Guard callback for one fit (unwrapped at its end)
    eager: bool | None = None  # whether the last update ran eagerly (False: traced into a graph or under JAX)
