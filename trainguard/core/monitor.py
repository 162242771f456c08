"""The monitor: the stateful shell that adapters call. It threads each step's statistics through the pure
detectors and keeps the findings."""
from __future__ import annotations

from trainguard.core.detector import Detector
from trainguard.core.detectors import default_detectors
from trainguard.core.findings import Finding
from trainguard.core.stats import StepStats

__all__ = ["Monitor"]


class Monitor:
    def __init__(self, detector: Detector | None = None):
        self.detector = detector if detector is not None else default_detectors()
        self.state = self.detector.init()
        self.findings: list[Finding] = []

    def observe(self, stats: StepStats) -> tuple[Finding, ...]:
        """Feeds one step; returns the findings it raised (also appended to ``self.findings``)."""
        found, self.state = self.detector.update(stats, self.state)
        self.findings.extend(found)
        return found
