"""``accumulation_spill``: updates that applied more backward passes than the run's usual count.

Rule (JoeyNMT PR 81, https://github.com/joeynmt/joeynmt/pull/81): a loop that accumulates gradients over k
batches divides each batch's loss by k, so that an update is the mean gradient of its k batches (the recipe of
the Accelerate guide, https://huggingface.co/docs/accelerate/usage_guides/gradient_accumulation, and of PyTorch's
AMP examples, "Gradient accumulation": ``loss / iters_to_accumulate``). When its countdown does not reach zero
at the end of an epoch, the leftover batches' gradients stay in ``.grad`` and are applied with the next epoch's
first group: that update sums k + leftover backward passes, each divided by k (7 / 4 = 1.75x the usual
gradient in the PR's setting), late, and one update per epoch is never taken.

The count is ``StepStats.backward_passes`` (the torch guard counts the passes since the gradients were last
zeroed, without the loop's help), else ``micro_batches`` (told through ``guard.accumulate``). The usual count
is the run's mode. An update above it is a spill; the detector fires (WARNING, once per run) at the
``min_events``-th (2) spill, once the usual count has been seen ``min_usual`` (8) times: one spill can be a
loop's start (a warm-up backward before the first step); two are a pattern.

Not this bug: an update BELOW the usual count (the epoch's last, partial group that Lightning and the Hugging
Face Trainer close early: applied at once, at most at the usual scale), and a constant count (ordinary
accumulation). Counts that never settle on a mode (a loop that never zeroes its gradients: 1, 2, 3, ...) give
no usual count and no finding.

Evidence: the usual count, the larger counts and their steps, their spacing, and the median ratio of the
spilling updates' gradient norm to the median of the last ``reference`` (16) usual updates' norms (when the
norms were measured).
"""
from __future__ import annotations

import math
import statistics
from typing import NamedTuple

from trainguard.core.detector import Detector
from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import StepStats

__all__ = ["accumulation_spill", "AccumulationSpillState"]

_KEPT_SPILLS = 32  # the most recent spills kept in the state


class AccumulationSpillState(NamedTuple):
    counts: dict[int, int]  # backward passes per update -> how many updates had that count
    usual: int  # the mode of `counts` (0 before the first count)
    usual_norms: tuple[float, ...]  # gradient norms of the last `reference` updates at the usual count
    spills: tuple[tuple[int, int, float | None], ...]  # (step, count, grad norm) of updates above the usual count
    reported: bool


def accumulation_spill(min_events: int = 2, min_usual: int = 8, reference: int = 16) -> Detector:
    def init() -> AccumulationSpillState:
        return AccumulationSpillState({}, 0, (), (), False)

    def update(stats: StepStats, state: AccumulationSpillState):
        count = stats.backward_passes if stats.backward_passes is not None else stats.micro_batches
        if state.reported or not count or count < 1:
            return (), state
        counts = dict(state.counts)
        counts[count] = counts.get(count, 0) + 1
        usual = state.usual
        if count != usual:  # only another count can move the mode; a tie goes to the smaller count
            usual = max(counts, key=lambda c: (counts[c], -c))
        norm = stats.grad_norm if stats.grad_norm is not None and math.isfinite(stats.grad_norm) else None
        usual_norms, spills = state.usual_norms, state.spills
        if count == usual and norm is not None:
            usual_norms = (usual_norms + (norm,))[-reference:]
        elif count > usual:
            spills = (spills + ((stats.step, count, norm),))[-_KEPT_SPILLS:]
        spills = tuple(s for s in spills if s[1] > usual)  # the mode may have moved since
        new_state = AccumulationSpillState(counts, usual, usual_norms, spills, False)
        if len(spills) < min_events or counts[usual] < min_usual:
            return (), new_state
        return (_finding(stats.step, usual, spills, usual_norms),), new_state._replace(reported=True)

    return Detector("accumulation_spill", init, update, light=True)


def _finding(step: int, usual: int, spills, usual_norms: tuple[float, ...]) -> Finding:
    steps = [s for s, _, _ in spills]
    counts = [c for _, c, _ in spills]
    evidence: dict = {"usual_backward_passes": usual, "larger_counts": counts[-8:], "steps": steps[-8:],
                      "scale_if_divided_by_usual": round(max(counts) / usual, 4)}
    if len(steps) > 1:
        evidence["period"] = int(statistics.median(b - a for a, b in zip(steps, steps[1:])))
    baseline = statistics.median(usual_norms) if len(usual_norms) >= 4 else 0.0
    ratios = [n / baseline for _, _, n in spills if n is not None and baseline > 0.0]
    if ratios:
        evidence["grad_norm_ratio"] = round(statistics.median(ratios), 4)
    message = (f"{len(spills)} updates applied more backward passes than the usual {usual} "
               f"({', '.join(map(str, counts[-4:]))} at steps {', '.join(map(str, steps[-4:]))}): gradients of batches "
               f"left over from an earlier accumulation group were applied late and at up to "
               f"{max(counts) / usual:.3g}x the usual scale (close the last group of each epoch)")
    return Finding("accumulation_spill", Severity.WARNING, step, None, evidence, message)
