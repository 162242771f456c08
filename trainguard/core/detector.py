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

from typing import Any, Callable, Iterable, NamedTuple

from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import StepStats

__all__ = ["Detector", "chain", "parts", "replay", "Episode", "ARMED", "episode_update"]

Findings = tuple[Finding, ...]


class Detector(NamedTuple):
    name: str
    init: Callable[[], Any]
    update: Callable[[StepStats, Any], tuple[Findings, Any]]
    # The detectors a chain is made of, nested chains flattened (empty for a single detector): the monitor runs
    # each on its own, so that one that raises is switched off alone.
    parts: tuple[Detector, ...] = ()
    # Reads only what a light step of an overhead budget measures (``trainguard.core.budget``: the loss, the LRs,
    # the batch size, the backward passes, the module modes; not the gradients): it sees the light steps too.
    light: bool = False


def parts(detector: Detector) -> tuple[Detector, ...]:
    """The single detectors ``detector`` is made of, in order (itself when it is not a chain)."""
    return detector.parts or (detector,)


def chain(*detectors: Detector) -> Detector:
    """Runs several detectors on each step; the state is the tuple of their states, in order."""

    def init() -> tuple[Any, ...]:
        return tuple(d.init() for d in detectors)

    def update(stats: StepStats, state: tuple[Any, ...]) -> tuple[Findings, tuple[Any, ...]]:
        found: list[Finding] = []
        new_states = []
        for det, sub_state in zip(detectors, state):
            f, s = det.update(stats, sub_state)
            if f:
                found.extend(f)
            new_states.append(s)
        return tuple(found), tuple(new_states)

    flat = tuple(single for d in detectors for single in parts(d))
    return Detector("chain(" + ",".join(d.name for d in detectors) + ")", init, update, flat)


def replay(detector: Detector, stream: Iterable[StepStats]) -> tuple[list[Finding], Any]:
    """Runs a detector over a finished stream of statistics, in the order given; returns all its findings and
    its final state (the shape of ``update``, for a whole stream)."""
    state = detector.init()
    found: list[Finding] = []
    for stats in stream:
        new, state = detector.update(stats, state)
        found.extend(new)
    return found, state


class Episode(NamedTuple):
    """Where a detector stands in its once-per-episode reporting.

    ``reported`` is the highest severity reported in the current episode (0: armed, no episode);
    ``clear_steps`` counts the consecutive observed steps on which the condition has been clear.
    """

    reported: int
    clear_steps: int


ARMED = Episode(0, 0)


def episode_update(episode: Episode, firing: Severity | None, rearm_after: int) -> tuple[bool, Episode]:
    """Advances an episode by one observed step; returns ``(report, new_episode)``.

    ``firing`` is the severity the rule holds at on this step, or None when its condition is clear. A finding is
    due on onset and, once, on each escalation to a higher severity (a warning that becomes an error). The episode
    ends, re-arming the detector, after ``rearm_after`` consecutive clear steps. Steps a detector cannot judge
    (a non-finite value, a step without the sampled statistics) should not be passed here at all.
    """
    if firing is not None:
        if firing > episode.reported:
            return True, Episode(int(firing), 0)
        return False, Episode(episode.reported, 0)
    if episode.reported == 0:
        return False, episode
    clear = episode.clear_steps + 1
    return False, ARMED if clear >= rearm_after else Episode(episode.reported, clear)
