"""Rollback bookkeeping: which snapshots exist, which to restore, how many batches to skip afterwards.

PaLM (Chowdhery et al. 2022, section 5.1): on a loss spike, restart from a checkpoint about 100 steps before it
and skip 200-500 data batches around it. Here snapshots are in memory, taken every ``every`` healthy steps and
labelled by the step whose update they precede (label 0 is the state before any update); the ``keep`` newest are
held. A rollback restores the newest snapshot strictly before the episode's first bad step (a retry in the same
episode goes to an older one), then skips the updates of as many batches as the episode lasted, at least
``min_skip`` and at most ``max_skip``: the batches that led there were consumed already, so skipping is scaled
to the run instead of PaLM's fixed hundreds.
"""
from __future__ import annotations

from typing import NamedTuple

__all__ = ["SnapshotBook", "snapshot_book", "record_snapshot", "due", "choose", "forget_after", "skip_count"]


class SnapshotBook(NamedTuple):
    labels: tuple[int, ...]  # snapshots held, oldest first; mirrors what the adapter holds
    keep: int
    every: int


def snapshot_book(every: int = 100, keep: int = 3) -> SnapshotBook:
    if every < 1 or keep < 1:
        raise ValueError("snapshot every and keep must be >= 1")
    return SnapshotBook((0,), keep, every)


def due(book: SnapshotBook, label: int) -> bool:
    """Whether a snapshot labelled ``label`` should be taken now."""
    return label - (book.labels[-1] if book.labels else 0) >= book.every


def record_snapshot(book: SnapshotBook, label: int) -> SnapshotBook:
    return book._replace(labels=(book.labels + (label,))[-book.keep:])


def choose(book: SnapshotBook, before: int) -> int | None:
    """The newest snapshot with a label <= ``before``; None when there is none."""
    older = [label for label in book.labels if label <= before]
    return older[-1] if older else None


def forget_after(book: SnapshotBook, label: int) -> SnapshotBook:
    """After restoring ``label``, the newer snapshots belong to the abandoned trajectory."""
    return book._replace(labels=tuple(x for x in book.labels if x <= label))


def skip_count(onset: int, step: int, min_skip: int = 1, max_skip: int = 500) -> int:
    return max(min_skip, min(max_skip, step - onset + 1))
