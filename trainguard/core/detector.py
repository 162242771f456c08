"""The detector protocol: a pure ``init``/``update`` pair with explicit state (after optax's transforms).

A detector is built by a factory that takes its thresholds, for example ``loss_spike(z=6.0)``. ``init()`` returns
its state (a NamedTuple); ``update(stats, state)`` returns ``(findings, new_state)`` and never mutates ``state``.
A detector reports a pathology once, when an episode starts, and re-arms when it has cleared, so a run that stays
sick does not produce one finding per step.

>>> from trainguard.core.detectors import non_finite
>>> from trainguard.core.stats import StepStats
>>> det = non_finite()
>>> findings, state = det.update(StepStats(step=3, loss=float("nan"), loss_finite=False), det.init())
>>> findings[0].code, findings[0].step
('non_finite', 3)
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

from trainguard.core.findings import Finding
from trainguard.core.stats import StepStats

__all__ = ["Detector", "chain"]

Findings = tuple[Finding, ...]


class Detector(NamedTuple):
    name: str
    init: Callable[[], Any]
    update: Callable[[StepStats, Any], tuple[Findings, Any]]


def chain(*detectors: Detector) -> Detector:
    """Runs several detectors on each step; the state is the tuple of their states, in order."""

    def init() -> tuple[Any, ...]:
        return tuple(d.init() for d in detectors)

    def update(stats: StepStats, state: tuple[Any, ...]) -> tuple[Findings, tuple[Any, ...]]:
        found: list[Finding] = []
        new_states = []
        for det, sub_state in zip(detectors, state):
            f, s = det.update(stats, sub_state)
            found.extend(f)
            new_states.append(s)
        return tuple(found), tuple(new_states)

    return Detector("chain(" + ",".join(d.name for d in detectors) + ")", init, update)
