"""trainguard: watch, diagnose and repair neural-network training.

``trainguard.Guard`` is the PyTorch guard; it is imported on first use so ``import trainguard`` stays light and
the core needs no framework.
"""
from __future__ import annotations

from typing import Any

from trainguard.core.findings import Finding, Severity

__version__ = "0.1.0"
__all__ = ["Guard", "diff", "policies", "TrainingStopped", "Finding", "Severity", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Guard":
        from trainguard.adapters.torch import Guard

        return Guard
    if name == "diff":  # the package trainguard.diff is callable: trainguard.diff(a, b)
        import trainguard.diff

        return trainguard.diff
    if name == "TrainingStopped":  # raised by guard.step when a repair policy gives up
        from trainguard.core.policies import TrainingStopped

        return TrainingStopped
    if name == "policies":
        import trainguard.policies

        return trainguard.policies
    raise AttributeError(f"module 'trainguard' has no attribute {name!r}")
