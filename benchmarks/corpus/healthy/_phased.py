"""Mini-batches whose data set changes on purpose at given steps (a curriculum stage, a new task, a new image size):
the healthy distribution-switch recipes share it with the plain loop of :mod:`._torch_loop`."""
from __future__ import annotations

import numpy as np

from benchmarks.corpus.healthy._common import Batches


class PhasedBatches:
    """``phases`` is a list of ``(first_step, Batches)``, the first at step 0: ``next()`` draws from the phase the
    current step is in. Each phase keeps its own shuffling, so a phase's batches do not depend on the others."""

    def __init__(self, phases: list[tuple[int, Batches]]):
        if not phases or phases[0][0] != 0:
            raise ValueError("the first phase must start at step 0")
        self.phases = sorted(phases, key=lambda p: p[0])
        self.step = 0

    def next(self) -> tuple[np.ndarray, ...]:
        current = [b for first, b in self.phases if first <= self.step][-1]
        self.step += 1
        return current.next()
