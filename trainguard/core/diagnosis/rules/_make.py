"""The one way a rule builds a :class:`Cause`: confidence clamped to [0, 1], the fix for the run's framework."""
from __future__ import annotations

import math
from typing import Any

from trainguard.core.diagnosis.cause import Cause
from trainguard.core.diagnosis.fixes import fix_for
from trainguard.core.diagnosis.run_view import RunView

__all__ = ["make_cause", "strength"]


def make_cause(view: RunView, code: str, confidence: float, evidence: dict[str, Any], message: str) -> Cause:
    return Cause(code, round(min(1.0, max(0.0, confidence)), 3), evidence, fix_for(code, view.framework), message)


def strength(value: float, low: float, high: float) -> float:
    """0 at ``low``, 1 at ``high``, linear in log10 between them (how strongly a ratio exceeds its threshold)."""
    if value <= low:
        return 0.0
    if value >= high:
        return 1.0
    return math.log10(value / low) / math.log10(high / low)
