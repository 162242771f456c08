"""A bounded history of a live run's statistics, kept for a diagnosis at any time.

A run can last millions of steps; the diagnosis needs its beginning (the data scale of the first batches, the
first gradient norms), its recent past in full (spikes, the steps per epoch), and a thinned view of the middle.
``StatsHistory`` keeps the first ``head`` steps, the last ``tail`` steps, and of the steps in between every
``stride``-th, doubling the stride whenever the middle exceeds ``middle`` steps, so memory stays bounded and the
middle stays evenly spread. It reads like the ``deque`` it replaces: ``append``, ``len``, iteration in step
order, and indexing.
"""
from __future__ import annotations

from collections import deque
from typing import Iterator

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

    def append(self, stats: StepStats) -> None:
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

    def __iter__(self) -> Iterator[StepStats]:
        yield from self.head
        yield from self.middle
        yield from self.tail

    def __len__(self) -> int:
        return len(self.head) + len(self.middle) + len(self.tail)

    def __getitem__(self, index: int) -> StepStats:
        """The ``index``-th kept step (negative counts from the end), as in the deque it replaces."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError("StatsHistory index out of range")
        index %= n
        for part in (self.head, self.middle, self.tail):
            if index < len(part):
                return part[index]
            index -= len(part)
        raise AssertionError("unreachable")
