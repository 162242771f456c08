"""Root-cause diagnosis: ``diagnose(stats, findings, framework) -> list[Cause]``, ranked.

>>> from trainguard.core.diagnosis import diagnose
>>> from trainguard.core.stats import StepStats
>>> diagnose([StepStats(step=i, loss=1.0 / (i + 1), grad_norm=1.0) for i in range(50)], [])
[]
"""
from __future__ import annotations

from trainguard.core.diagnosis.cause import Cause, Fix, top_code
from trainguard.core.diagnosis.engine import EXPLAINS, MIN_CONFIDENCE, diagnose, signal_detectors
from trainguard.core.diagnosis.fixes import FIXES, fix_for
from trainguard.core.diagnosis.history import StatsHistory
from trainguard.core.diagnosis.rules import RULES

__all__ = ["diagnose", "Cause", "Fix", "top_code", "StatsHistory", "RULES", "EXPLAINS", "FIXES", "fix_for",
           "MIN_CONFIDENCE", "signal_detectors"]
