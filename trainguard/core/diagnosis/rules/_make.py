"""The one way a rule builds a :class:`Cause`: confidence clamped to [0, 1], the fix for the run's framework.

A confidence of ``CONFIDENT`` (0.6) or more needs evidence that separates the cause from its look-alikes, named
in ``evidence["separated_by"]``; without it the confidence is capped just below. ``CANDIDATE`` (0.4) is what a
rule proposes when the run shows a pattern this cause shares with others (a loss stuck from the start) and
nothing measured tells them apart: the engine then reports them together as ``uncertain``.
"""
from __future__ import annotations

import math
from typing import Any

from trainguard.core.diagnosis.cause import Cause
from trainguard.core.diagnosis.fixes import fix_for
from trainguard.core.diagnosis.run_view import RunView

__all__ = ["make_cause", "strength", "CONFIDENT", "CANDIDATE", "UNSEPARATED_CAP"]

CONFIDENT = 0.6
UNSEPARATED_CAP = 0.55
CANDIDATE = 0.4


def make_cause(view: RunView, code: str, confidence: float, evidence: dict[str, Any], message: str) -> Cause:
    if "separated_by" not in evidence:
        confidence = min(confidence, UNSEPARATED_CAP)
    clipped = view.clip_max_norm is not None
    if clipped and code == "exploding_gradient":
        evidence = {**evidence, "clipped_by_the_run_at": view.clip_max_norm}
        message += f" (the run already clips the gradient at max_norm {view.clip_max_norm:g})"
    fix = fix_for(code, view.framework, clipped=clipped)
    return Cause(code, round(min(1.0, max(0.0, confidence)), 3), evidence, fix, message)


def strength(value: float, low: float, high: float) -> float:
    """0 at ``low``, 1 at ``high``, linear in log10 between them (how strongly a ratio exceeds its threshold)."""
    if value <= low:
        return 0.0
    if value >= high:
        return 1.0
    return math.log10(value / low) / math.log10(high / low)
