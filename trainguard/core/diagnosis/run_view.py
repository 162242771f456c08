"""The run as the rules see it: the statistics, the findings, and the series the rules share.

Built once per diagnosis; the rules only read it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np

from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import StepStats

__all__ = ["RunView", "INSTABILITY_CODES"]

# Findings that show training going unstable: what the root causes of the explosion family must explain.
INSTABILITY_CODES = ("non_finite", "exploding_gradient", "divergence", "loss_spike")


@dataclass(frozen=True)
class RunView:
    stats: tuple[StepStats, ...]
    findings: tuple[Finding, ...]
    framework: str = "torch"

    @classmethod
    def build(cls, stats: Sequence[StepStats], findings: Sequence[Finding], framework: str = "torch") -> RunView:
        return cls(tuple(sorted(stats, key=lambda s: s.step)), tuple(findings), framework)

    def of(self, code: str, min_severity: Severity = Severity.INFO) -> list[Finding]:
        return [f for f in self.findings if f.code == code and f.severity >= min_severity]

    def has(self, code: str, min_severity: Severity = Severity.INFO) -> bool:
        return bool(self.of(code, min_severity))

    @cached_property
    def nonfinite_steps(self) -> list[int]:
        steps = [s.step for s in self.stats if not s.finite]
        steps += [f.step for f in self.of("non_finite")]
        return sorted(set(steps))

    @cached_property
    def instability(self) -> list[Finding]:
        """Instability findings of WARNING or above, in step order."""
        return sorted((f for f in self.findings if f.code in INSTABILITY_CODES and f.severity >= Severity.WARNING),
                      key=lambda f: f.step)

    @property
    def unstable(self) -> bool:
        return bool(self.instability or self.nonfinite_steps)

    @cached_property
    def first_unstable_step(self) -> int | None:
        candidates = [f.step for f in self.instability] + self.nonfinite_steps[:1]
        return min(candidates) if candidates else None

    @property
    def stalled(self) -> bool:
        """The loss stopped improving: a plateau finding, or a final loss no better than 0.9x the first."""
        if self.has("plateau", Severity.WARNING):
            return True
        losses = self.losses[np.isfinite(self.losses)]
        if len(losses) < 20:
            return False
        head, tail = np.median(losses[:5]), np.median(losses[-5:])
        return bool(head > 0 and tail > 0.9 * head)

    @cached_property
    def steps(self) -> np.ndarray:
        return np.array([s.step for s in self.stats], dtype=np.int64)

    @cached_property
    def losses(self) -> np.ndarray:
        return np.array([_nan(s.loss) for s in self.stats], dtype=np.float64)

    @cached_property
    def grad_norms(self) -> np.ndarray:
        return np.array([_nan(s.grad_norm) for s in self.stats], dtype=np.float64)

    @cached_property
    def sampled(self) -> tuple[StepStats, ...]:
        """Finite steps that carry per-layer statistics."""
        return tuple(s for s in self.stats if s.layers and s.finite)


def _nan(x: float | None) -> float:
    return math.nan if x is None else float(x)
