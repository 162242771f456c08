"""``batch_size_loss``: the loss jumps at every smaller-than-usual batch (the last, partial batch of an epoch).

Rule (seed case 004, the Stack Overflow answer "Why does my training loss have regular spikes?"): a loss that
already divides by a batch-related count and is divided by the batch size again becomes inversely proportional to
the batch size. The last batch of an epoch is partial whenever the dataset size is not a multiple of the batch
size, so the loss, and with it the gradient, spikes once per epoch, exactly with the period of the steps per
epoch; momentum carries the bad step into the following ones. A correctly averaged loss does not depend on the
batch size: a partial batch is noisier, not systematically higher.

At each batch smaller than the usual (largest) batch size, the detector compares the loss with the median of the
last ``reference`` (4) full-batch losses. It fires (WARNING, once per run) when at least ``min_events`` (3)
small batches were seen and at least two thirds of them moved the loss by ``min_ratio`` (1.5x) or more, all in
the same direction. The evidence gives the ratios, the period between small batches and the ratio a loss
proportional to 1/batch_size would give (usual / small).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from trainguard.core.detector import Detector
from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import StepStats
from trainguard.core.window import Window, push, values, window

__all__ = ["batch_size_loss", "BatchSizeLossState"]

_KEPT_EVENTS = 32  # small-batch events kept in the state (the most recent)


class BatchSizeLossState(NamedTuple):
    usual_batch_size: int
    full_losses: Window  # recent losses of full-size batches
    events: tuple[tuple[int, float, int], ...]  # (step, loss ratio to the recent full-batch median, batch size)
    reported: bool


def batch_size_loss(min_ratio: float = 1.5, min_events: int = 3, reference: int = 4) -> Detector:
    def init() -> BatchSizeLossState:
        return BatchSizeLossState(0, window(reference), (), False)

    def update(stats: StepStats, state: BatchSizeLossState):
        size, loss = stats.batch_size, stats.loss
        if state.reported or not size or loss is None or not math.isfinite(loss):
            return (), state
        if size > state.usual_batch_size:  # the first batches, or a larger batch size from now on
            return (), BatchSizeLossState(size, push(window(reference), loss), (), False)
        if size == state.usual_batch_size:
            return (), state._replace(full_losses=push(state.full_losses, loss))
        if state.full_losses.count < reference:
            return (), state
        baseline = float(np.median(values(state.full_losses)))
        if baseline <= 0.0:
            return (), state
        events = (state.events + ((stats.step, loss / baseline, size),))[-_KEPT_EVENTS:]
        new_state = state._replace(events=events)
        finding = _pattern(events, state.usual_batch_size, min_ratio, min_events, stats.step)
        if finding is None:
            return (), new_state
        return (finding,), new_state._replace(reported=True)

    return Detector("batch_size_loss", init, update)


def _pattern(events, usual: int, min_ratio: float, min_events: int, step: int) -> Finding | None:
    if len(events) < min_events:
        return None
    ratios = np.array([r for _, r, _ in events])
    up, down = ratios >= min_ratio, ratios <= 1.0 / min_ratio
    moved = up if up.sum() >= down.sum() else down
    if moved.sum() < 2 or moved.sum() * 3 < 2 * len(events) or (up.any() and down.any()):
        return None
    steps = [s for s, _, _ in events]
    small = int(np.median([b for _, _, b in events]))
    period = int(np.median(np.diff(steps))) if len(steps) > 1 else None
    evidence = {
        "steps": steps[-8:], "loss_ratios": [round(r, 4) for r in ratios[-8:].tolist()],
        "median_ratio": float(np.median(ratios)), "usual_batch_size": usual, "small_batch_size": small,
        "ratio_if_loss_scales_as_1_over_batch": usual / small, "period": period,
    }
    direction = "higher" if up.any() else "lower"
    message = (f"the loss is {np.median(ratios):.3g}x {direction} at each batch of {small} samples than at the "
               f"usual {usual} (every {period} steps): the loss magnitude depends on the batch size")
    return Finding("batch_size_loss", Severity.WARNING, step, None, evidence, message)
