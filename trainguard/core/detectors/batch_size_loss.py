"""``batch_size_loss``: the loss jumps at every smaller-than-usual batch (the last, partial batch of an epoch).

Rule (seed case 004, the Stack Overflow answer "Why does my training loss have regular spikes?"): a loss that
already divides by a batch-related count and is divided by the batch size again becomes inversely proportional to
the batch size. The last batch of an epoch is partial whenever the dataset size is not a multiple of the batch
size, so the loss, and with it the gradient, spikes once per epoch, exactly with the period of the steps per
epoch; momentum carries the bad step into the following ones. A correctly averaged loss does not depend on the
batch size: a partial batch is noisier, not systematically higher.

At each batch smaller than the usual (largest) batch size, the detector compares the loss with the median of the
last ``reference`` (4) full-batch losses. The same comparison on full batches measures the loss's own noise and
trend. A small batch *moved* the loss when its log ratio, less the full batches' median log ratio (the trend),
is at least log(``min_ratio``) (1.5x) and ``noise_z`` (3) robust standard deviations of the full batches' log
ratios (median/MAD, judged once ``min_noise`` (8) of them exist). The detector fires (WARNING, once per run)
when at least ``min_events`` (3) small batches moved the loss, and at least two thirds of those seen did, all in
the same direction (two of three moving alike happens by chance in a noisy loss). The evidence gives the ratios, the period between small batches and the ratio a loss
proportional to 1/batch_size would give (usual / small).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from trainguard.core.detector import Detector
from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import StepStats
from trainguard.core.window import MAD_TO_SIGMA, median_mad

__all__ = ["batch_size_loss", "BatchSizeLossState"]

_KEPT_EVENTS = 32  # small-batch events kept in the state (the most recent)


class BatchSizeLossState(NamedTuple):
    usual_batch_size: int
    full_losses: tuple[float, ...]  # the last `reference` losses of full-size batches
    noise: tuple[float, ...]  # log(loss / recent full-batch median) of the last full-size batches
    # (step, loss ratio to the recent full-batch median, batch size, moved: +1 up, -1 down, 0 within the noise)
    events: tuple[tuple[int, float, int, int], ...]
    reported: bool


def batch_size_loss(min_ratio: float = 1.5, min_events: int = 3, reference: int = 4, noise_z: float = 3.0,
                    min_noise: int = 8, noise_window: int = 64) -> Detector:
    # Plain tuples and a sort of `reference` floats: this runs on every step, so it stays in the microseconds.
    def init() -> BatchSizeLossState:
        return BatchSizeLossState(0, (), (), (), False)

    def update(stats: StepStats, state: BatchSizeLossState):
        size, loss = stats.batch_size, stats.loss
        if state.reported or not size or loss is None or not math.isfinite(loss) or loss <= 0.0:
            return (), state
        if size > state.usual_batch_size:  # the first batches, or a larger batch size from now on
            return (), BatchSizeLossState(size, (loss,), (), (), False)
        baseline = _median(state.full_losses) if len(state.full_losses) >= reference else 0.0
        if size == state.usual_batch_size:
            noise = (state.noise + (math.log(loss / baseline),))[-noise_window:] if baseline > 0.0 else state.noise
            return (), BatchSizeLossState(size, (state.full_losses + (loss,))[-reference:], noise, state.events, False)
        if baseline <= 0.0 or len(state.noise) < min_noise:
            return (), state
        drift, mad = median_mad(np.asarray(state.noise))
        threshold = max(math.log(min_ratio), noise_z * MAD_TO_SIGMA * mad)
        excess = math.log(loss / baseline) - drift  # the full batches' own trend taken out
        moved = 1 if excess >= threshold else (-1 if excess <= -threshold else 0)
        events = (state.events + ((stats.step, loss / baseline, size, moved),))[-_KEPT_EVENTS:]
        new_state = state._replace(events=events)
        finding = _pattern(events, state.usual_batch_size, min_events, stats.step)
        if finding is None:
            return (), new_state
        return (finding,), new_state._replace(reported=True)

    return Detector("batch_size_loss", init, update, light=True)


def _median(xs: tuple[float, ...]) -> float:
    ordered = sorted(xs)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def _pattern(events, usual: int, min_events: int, step: int) -> Finding | None:
    if len(events) < min_events:
        return None
    signs = np.array([m for *_, m in events])
    up, down = int((signs > 0).sum()), int((signs < 0).sum())
    # Two small batches out of three moving the same way happen by chance in a noisy loss: at least
    # `min_events` must have moved, and two thirds of all of them.
    if (up and down) or max(up, down) < min_events or max(up, down) * 3 < 2 * len(events):
        return None
    ratios = np.array([r for _, r, _, _ in events])
    steps = [s for s, *_ in events]
    small = int(np.median([b for _, _, b, _ in events]))
    period = int(np.median(np.diff(steps))) if len(steps) > 1 else None
    evidence = {
        "steps": steps[-8:], "loss_ratios": [round(r, 4) for r in ratios[-8:].tolist()],
        "median_ratio": float(np.median(ratios)), "usual_batch_size": usual, "small_batch_size": small,
        "ratio_if_loss_scales_as_1_over_batch": usual / small, "period": period,
    }
    direction = "higher" if up else "lower"
    message = (f"the loss is {np.median(ratios):.3g}x {direction} at each batch of {small} samples than at the "
               f"usual {usual} (every {period} steps): the loss magnitude depends on the batch size")
    return Finding("batch_size_loss", Severity.WARNING, step, None, evidence, message)
