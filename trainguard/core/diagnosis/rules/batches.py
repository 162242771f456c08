"""Causes tied to particular batches: ``batch_size_dependent_loss`` and ``bad_batch``.

``batch_size_dependent_loss``: the ``batch_size_loss`` finding (the loss moves by >= 1.5x at every
smaller-than-usual batch, all in one direction; seed case 004), strengthened when loss spikes fall on those
small batches (the spike period equals the steps per epoch).

``bad_batch``: one or two isolated loss spikes or non-finite steps after which the loss comes back to where it was
(within 2x of the median before), with no exploding gradient before them and no periodic pattern. That is what
a corrupt or mislabelled batch looks like (PaLM, Chowdhery et al. 2022: spikes tied to particular batches that
disappear when those batches are skipped). The batch fingerprints, when recorded, identify the batches.
"""
from __future__ import annotations

import numpy as np

from trainguard.core.diagnosis.cause import Cause
from trainguard.core.diagnosis.rules._make import make_cause
from trainguard.core.diagnosis.run_view import RunView
from trainguard.core.findings import Severity

__all__ = ["batch_size_dependent_loss", "bad_batch"]

MAX_BAD_BATCHES = 2
RECOVERY = 2.0


def batch_size_dependent_loss(view: RunView) -> Cause | None:
    found = view.of("batch_size_loss", Severity.WARNING)
    if not found:
        return None
    evidence = dict(found[0].evidence)
    usual = evidence.get("usual_batch_size") or max((s.batch_size or 0) for s in view.stats)
    small_steps = {s.step for s in view.stats if s.batch_size and s.batch_size < usual}
    spikes = [f.step for f in view.of("loss_spike", Severity.WARNING)]
    on_small = [s for s in spikes if any(abs(s - t) <= 1 for t in small_steps)]  # momentum carries it one step
    evidence["spikes_on_small_batches"] = on_small[:8]
    confidence = 0.95 if on_small else 0.85
    return make_cause(view, "batch_size_dependent_loss", confidence, evidence, found[0].message)


def bad_batch(view: RunView) -> Cause | None:
    events = sorted({f.step for f in view.of("loss_spike", Severity.WARNING)} | set(view.nonfinite_steps))
    if not events or len(_episodes(events)) > MAX_BAD_BATCHES or view.has("batch_size_loss", Severity.WARNING):
        return None
    exploding = view.of("exploding_gradient", Severity.WARNING)
    if exploding and exploding[0].step <= events[0]:
        return None
    steps, losses = view.steps, view.losses
    recovered = []
    for step in events:
        before = losses[(steps < step) & (steps >= step - 20) & np.isfinite(losses)]
        after = losses[(steps > step + 2) & (steps <= step + 25) & np.isfinite(losses)]
        if len(before) < 3 or len(after) < 3 or np.median(after) > RECOVERY * np.median(before):
            return None
        recovered.append({"step": step, "loss_before": float(np.median(before)), "loss_after": float(np.median(after))})
    by_step = {s.step: s for s in view.stats}
    fingerprints = {step: by_step[step].batch_fingerprint for step in events
                    if step in by_step and by_step[step].batch_fingerprint}
    evidence = {"steps": events, "recovered": recovered}
    if fingerprints:
        evidence["batch_fingerprints"] = fingerprints
    message = (f"isolated trouble at step(s) {', '.join(map(str, events))}, after which the loss came back: "
               f"the batch(es) at those steps look bad")
    return make_cause(view, "bad_batch", 0.5, evidence, message)


def _episodes(steps: list[int], gap: int = 5) -> list[list[int]]:
    """Groups steps that lie within ``gap`` of each other into one episode."""
    groups: list[list[int]] = []
    for step in steps:
        if groups and step - groups[-1][-1] <= gap:
            groups[-1].append(step)
        else:
            groups.append([step])
    return groups
