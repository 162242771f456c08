"""The monitor: the stateful shell that adapters call. It threads each step's statistics through the pure
detectors and keeps the findings.

Each detector of a chain runs on its own: one that raises is switched off alone, the others keep running, and
the failure is reported once as a ``guard_internal_error`` finding (severity WARNING: the run is fine, but part of
its monitoring is now off, which the user must not miss) and a ``RuntimeWarning``.
"""
from __future__ import annotations

import traceback
import warnings
from typing import Any, Sequence

from trainguard.core.detector import Detector, parts
from trainguard.core.detectors import default_detectors
from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import StepStats

__all__ = ["Monitor", "INTERNAL_ERROR"]

INTERNAL_ERROR = "guard_internal_error"


class Monitor:
    def __init__(self, detector: Detector | None = None):
        self.detector = detector if detector is not None else default_detectors()
        self.detectors = parts(self.detector)
        self.state: tuple[Any, ...] = tuple(d.init() for d in self.detectors)  # one state per detector, in order
        self.disabled: list[str] = []  # names of the detectors switched off after raising, in order
        self._off: set[int] = set()  # their positions in ``self.detectors``
        self._every = tuple(range(len(self.detectors)))
        self._light = tuple(i for i, d in enumerate(self.detectors) if d.light)  # those that read the loss alone
        self.findings: list[Finding] = []

    def observe(self, stats: StepStats) -> tuple[Finding, ...]:
        """Feeds one step; returns the findings it raised (also appended to ``self.findings``)."""
        return self._run(stats, self._every)

    def observe_light(self, steps: Sequence[StepStats]) -> list[tuple[Finding, ...]]:
        """Feeds light steps (the loss measured, not the gradients), in order, to the detectors that read the loss
        alone; returns each step's findings."""
        return [self._run(stats, self._light) for stats in steps]

    def _run(self, stats: StepStats, which: Any) -> tuple[Finding, ...]:
        found: list[Finding] = []
        states = list(self.state)
        detectors = self.detectors
        off = self._off
        for i in which:
            if i in off:
                continue
            det = detectors[i]
            try:
                new, states[i] = det.update(stats, states[i])
            except Exception as error:  # noqa: BLE001 - containment: this detector goes, the others stay
                off.add(i)
                self.disabled.append(det.name)
                found.append(_internal_error(det.name, error, stats.step))
                continue
            if new:
                found.extend(new)
        self.state = tuple(states)
        if not found:
            return ()
        self.findings.extend(found)
        return tuple(found)


def _internal_error(name: str, error: Exception, step: int) -> Finding:
    detail = " ".join(str(error).split())  # one line
    frame = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
    raised_at = f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}" if frame else None
    message = (f"trainguard: internal error in its detectors at step {step}: {name} raised "
               f"{type(error).__name__}: {detail}" + (f" ({raised_at})" if raised_at else "") +
               f"; {name} switched off, the other detectors keep running")
    warnings.warn(message, RuntimeWarning, stacklevel=4)  # the caller of observe()
    evidence = {"part": "detectors", "detector": name, "error": type(error).__name__, "detail": detail,
                "raised_at": raised_at}
    return Finding(INTERNAL_ERROR, Severity.WARNING, step, "detectors", evidence, message)
