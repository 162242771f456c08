"""trainguard's core: numpy and the standard library only (a test enforces it).

A stream of :class:`StepStats` goes in; :class:`Finding` records come out.
"""
from trainguard.core.actions import Action
from trainguard.core.detector import Detector, chain
from trainguard.core.findings import Finding, Severity
from trainguard.core.monitor import Monitor
from trainguard.core.stats import ActivationStats, LayerStats, StepStats, TensorSummary

__all__ = ["Action", "Detector", "chain", "Finding", "Severity", "Monitor", "LayerStats", "ActivationStats", "StepStats", "TensorSummary"]
