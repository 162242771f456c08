"""The wrapper's skip/clip decision, written once for every path an update takes: an eager update decides on
host numbers (:data:`HOST`), a compiled one (graph, JAX ``stateless_apply``) on tensors (``keras.ops``).

It is the core's ``trainguard.core.policies.step_decision`` (the reference both adapters implement) with two
Keras additions: a batch inside a rollback's skip window is skipped, and under loss scaling non-finite steps are
left to the ``LossScaleOptimizer`` (which skips them itself and must see them to lower its scale) and recorded as
skipped.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

__all__ = ["HOST", "Decision", "decide", "CLIP_EPS"]

CLIP_EPS = 1e-6  # step_decision's: the clip factor is clip_norm / (norm + CLIP_EPS), as clip_grad_norm_'s


class _HostOps:
    """The few ``keras.ops`` the decision uses, on Python numbers."""

    logical_and = staticmethod(lambda a, b: bool(a) and bool(b))
    logical_or = staticmethod(lambda a, b: bool(a) or bool(b))
    logical_not = staticmethod(lambda a: not a)
    isfinite = staticmethod(math.isfinite)
    where = staticmethod(lambda condition, a, b: a if condition else b)


HOST = _HostOps()


class Decision(NamedTuple):
    skip: Any  # the guard skips this update
    scale: Any  # the factor on the gradients when it is applied (1.0: unclipped)
    clipped: Any  # the update is applied clipped
    recorded_skip: Any  # not applied: skipped by the guard, or by the LossScaleOptimizer


def decide(xp: Any, *, skip_non_finite: Any, skip_above: Any, clip_norm: Any, in_skip_window: Any, total: Any,
           loss_finite: Any, loss_scaled: bool) -> Decision:
    """``xp`` is :data:`HOST` or ``keras.ops``; the orders are numbers or tensors accordingly (``skip_non_finite``
    and ``in_skip_window`` as booleans)."""
    norm_finite = xp.isfinite(total)
    finite = xp.logical_and(norm_finite, loss_finite)
    skip = xp.logical_or(total > skip_above, in_skip_window)
    if not loss_scaled:
        skip = xp.logical_or(skip, xp.logical_and(skip_non_finite, xp.logical_not(finite)))
    clipped = xp.logical_and(xp.logical_and(finite, total > clip_norm), xp.logical_not(skip))
    scale = xp.where(clipped, clip_norm / (total + CLIP_EPS), 1.0)
    recorded = xp.logical_or(skip, xp.logical_not(norm_finite)) if loss_scaled else skip
    return Decision(skip, scale, clipped, recorded)

