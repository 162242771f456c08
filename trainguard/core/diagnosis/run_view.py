"""The run as the rules see it: the statistics, the findings, and the series the rules share.

Built once per diagnosis; the rules only read it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np

from trainguard.core.diagnosis import course
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
        """The rules read the steps measured in full: an overhead budget's light steps (``StepStats.light``: the
        loss alone) are left out where the run has others, so that every series the rules index together (losses,
        gradient norms, LRs) has each of its points; their losses were judged live by the loss detectors, whose
        findings the rules read. A light step with a finding stays: its loss is the symptom the rules read (a
        bad batch's spike), its missing gradient norm a gap as in a loss-only log."""
        symptoms = {f.step for f in findings}
        measured = [s for s in stats if not s.light or s.step in symptoms]
        return cls(tuple(sorted(measured or stats, key=lambda s: s.step)), tuple(findings), framework)

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
    def early_blow_up(self) -> dict | None:
        """The loss went non-finite before the run had logged ``course.MIN_POINTS`` (8) finite losses: too short a
        course for any rule's measure (a climb, a calm phase, a spike against its trend) to read a cause from."""
        first = next((s.step for s in self.stats if not s.loss_finite), None)
        if first is None:
            return None
        before = [float(s.loss) for s in self.stats if s.step < first and s.loss is not None and s.loss_finite]
        if len(before) >= course.MIN_POINTS:
            return None
        return {"non_finite_from_step": first, "finite_losses_before": len(before),
                "last_finite_loss": before[-1] if before else None}

    @cached_property
    def instability(self) -> list[Finding]:
        """Instability findings of WARNING or above, in step order."""
        return sorted((f for f in self.findings if f.code in INSTABILITY_CODES and f.severity >= Severity.WARNING),
                      key=lambda f: f.step)

    @property
    def unstable(self) -> bool:
        """Instability findings, non-finite values, or a loss that climbed back from its best and stayed up."""
        return bool(self.instability or self.nonfinite_steps or self.climb)

    @cached_property
    def first_unstable_step(self) -> int | None:
        candidates = [f.step for f in self.instability] + self.nonfinite_steps[:1]
        if self.climb:
            candidates.append(self.climb["onset_step"])
        return min(candidates) if candidates else None

    @property
    def stalled(self) -> bool:
        """The loss stopped improving: a plateau finding, a loss stuck from the start, or a final loss no better
        than 0.9x the first."""
        if self.has("plateau", Severity.WARNING) or self.stall:
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
    def lrs(self) -> np.ndarray:
        return np.array([_nan(s.lr) for s in self.stats], dtype=np.float64)

    def point_of(self, step: int) -> int:
        """The index of the first recorded step at or after ``step`` (the last one when past the end)."""
        return min(int(np.searchsorted(self.steps, step)), max(0, len(self.steps) - 1))

    @cached_property
    def targets_second_moment(self) -> float | None:
        """mean^2 + std^2 of the first targets summary: the mean squared error of predicting 0."""
        first = next((s.targets for s in self.stats if s.targets is not None), None)
        if first is None or not (math.isfinite(first.mean) and math.isfinite(first.std)):
            return None
        return first.mean ** 2 + first.std ** 2 or None

    @cached_property
    def targets_variance(self) -> float | None:
        """std^2 of the first targets summary: the mean squared error of predicting their mean."""
        first = next((s.targets for s in self.stats if s.targets is not None), None)
        if first is None or not math.isfinite(first.std):
            return None
        return first.std ** 2 or None

    @cached_property
    def first_loss_scale(self) -> dict | None:
        """The first loss when orders of magnitude above a trivial predictor's (``course.first_loss_scale``)."""
        return course.first_loss_scale(self.losses, self.targets_second_moment)

    @cached_property
    def stall(self) -> dict | None:
        """The loss stuck from the start (``course.stall_from_start``)."""
        return course.stall_from_start(self.losses, self.targets_second_moment, self.targets_variance)

    @cached_property
    def climb(self) -> dict | None:
        """The loss climbed back from its best level and stayed up (``course.climb``), with the onset step."""
        found = course.climb(self.losses)
        if found is None:
            return None
        finite_steps = self.steps[np.isfinite(self.losses)]
        return {**found, "onset_step": int(finite_steps[min(found.pop("onset_point"), len(finite_steps) - 1)])}

    @cached_property
    def zero_initialized(self) -> frozenset[str]:
        """Tensors whose norm was 0 when first sampled (a zero-initialized positional embedding, output layer
        or LoRA factor): their update-to-weight ratio measures growth from nothing, not the step size."""
        first: dict[str, float | None] = {}
        for s in self.stats:
            for layer in s.layers:
                first.setdefault(layer.name, layer.weight_norm)
        return frozenset(name for name, norm in first.items() if norm == 0.0)

    @cached_property
    def clip_max_norm(self) -> float | None:
        """The gradient-clipping cap the run applies itself (the last one told to the guard), if any."""
        return next((s.clip_max_norm for s in reversed(self.stats) if s.clip_max_norm is not None), None)

    @cached_property
    def sampled(self) -> tuple[StepStats, ...]:
        """Finite steps that carry per-layer statistics."""
        return tuple(s for s in self.stats if s.layers and s.finite)


def _nan(x: float | None) -> float:
    return math.nan if x is None else float(x)
