"""When the costly statistics are taken: a preset as plain data, ``due(step)`` per statistic (after Cockpit's
``should_compute``). Every adapter reads the same schedule, so a step is sampled alike whatever the framework."""
from __future__ import annotations

from typing import NamedTuple

from trainguard.core.presets import Preset

__all__ = ["Cadence", "Schedule", "schedule"]


class Cadence(NamedTuple):
    """Due on the first ``first`` steps, and on every ``every``-th step (``every=0``: never after those)."""

    every: int = 0
    first: int = 0

    def due(self, step: int) -> bool:
        return step < self.first or (self.every > 0 and step % self.every == 0)


class Schedule(NamedTuple):
    layers: Cadence  # per-tensor norms, update ratios, Adam's moments, activation health
    modes: Cadence  # BatchNorm/Dropout layers left in inference mode
    data: Cadence  # the data-scale summary of the first batches
    forensic: Cadence  # batch fingerprints and running statistics (``trainguard diff``)


def schedule(preset: Preset) -> Schedule:
    forensic = preset.forensic_steps
    return Schedule(layers=Cadence(preset.layer_every, forensic), modes=Cadence(preset.mode_every, forensic),
                    data=Cadence(0, preset.data_batches), forensic=Cadence(0, forensic))
