"""A bounded history of a live run's statistics, kept for a diagnosis at any time.

A run can last millions of steps; the diagnosis needs its beginning (data scale, the first gradient norms), its
recent past in full (spikes, the steps per epoch), and a thinned view of the middle. ``StatsHistory`` keeps the
first ``head`` steps, the last ``tail`` steps, and of the steps in between every ``stride``-th, doubling the
stride whenever the middle exceeds ``middle`` steps (so memory stays bounded and the middle stays evenly spread).
"""
from __future__ import annotations

from collections import deque

from trainguard.core.stats import StepStats

__all__ = ["StatsHistory"]


class StatsHistory:
    def __init__(self, head: int = 512, tail: int = 4096, middle: int = 2048):
        if min(head, tail, middle) < 1:
            raise ValueError("head, tail and middle must be >= 1")
        self.head: list[StepStats] = []
        self.head_size = head
        self.tail: deque[StepStats] = deque()
        self.tail_size = tail
        self.middle: list[StepStats] = []
        self.middle_size = middle
        self.stride = 1
        self._evicted = 0  # steps that left the tail so far

    def add(self, stats: StepStats) -> None:
        if len(self.head) < self.head_size:
            self.head.append(stats)
            return
        self.tail.append(stats)
        if len(self.tail) > self.tail_size:
            self._keep_in_middle(self.tail.popleft())

    def _keep_in_middle(self, stats: StepStats) -> None:
        index = self._evicted
        self._evicted += 1
        if index % self.stride:
            return
        self.middle.append(stats)
        if len(self.middle) > self.middle_size:
            self.stride *= 2
            self.middle = self.middle[::2]  # kept items sit at multiples of the old stride: every other one stays

    def steps(self) -> list[StepStats]:
        """Every kept step, in order."""
        return [*self.head, *self.middle, *self.tail]

    def __len__(self) -> int:
        return len(self.head) + len(self.middle) + len(self.tail)
