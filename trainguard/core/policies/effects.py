"""Measuring what a repair did: the loss and gradient norm before an action and over the steps after it.

An action is held back until ``window`` applied, finite steps have followed it, then handed out with its
``effect`` filled in: ``loss_before`` (the loss at the action's step), ``loss_after`` (the median loss over those
steps), the same for the gradient norm, and ``steps_measured``. The run log thus records each action once, when
complete, with its original ``step``; at the end of a run the actions still waiting are handed out with what
was measured so far (``steps_measured`` < ``window``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from trainguard.core.actions import Action
from trainguard.core.stats import StepStats

__all__ = ["EffectTracker"]


def _finite_or_none(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


@dataclass
class _Pending:
    action: Action
    loss_before: float | None
    norm_before: float | None
    losses: list[float] = field(default_factory=list)
    norms: list[float] = field(default_factory=list)


class EffectTracker:
    def __init__(self, window: int = 5):
        if window < 1:
            raise ValueError("effect window must be >= 1")
        self.window = window
        self._pending: list[_Pending] = []

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, action: Action, stats: StepStats | None) -> None:
        loss = stats.loss if stats is not None else None
        norm = stats.grad_norm if stats is not None else None
        self._pending.append(_Pending(action, loss, norm))

    def observe(self, stats: StepStats) -> list[Action]:
        """Feeds one step; returns the actions whose effect is now measured."""
        if not self._pending or not (stats.applied and stats.finite) or stats.loss is None:
            return []
        for p in self._pending:
            if stats.step > p.action.step:
                p.losses.append(float(stats.loss))
                if stats.grad_norm is not None:
                    p.norms.append(float(stats.grad_norm))
        done = [p for p in self._pending if len(p.losses) >= self.window]
        self._pending = [p for p in self._pending if len(p.losses) < self.window]
        return [self._complete(p) for p in done]

    def flush(self) -> list[Action]:
        done, self._pending = self._pending, []
        return [self._complete(p) for p in done]

    @staticmethod
    def _complete(p: _Pending) -> Action:
        effect = dict(p.action.effect)
        effect.update(
            loss_before=p.loss_before,  # may be NaN/Inf: the run log writes those as strings
            loss_after=float(np.median(p.losses)) if p.losses else None,
            grad_norm_before=_finite_or_none(p.norm_before),
            grad_norm_after=float(np.median(p.norms)) if p.norms else None,
            steps_measured=len(p.losses),
        )
        return p.action._replace(effect=effect)
