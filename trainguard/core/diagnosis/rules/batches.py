"""Causes tied to particular batches: ``batch_size_dependent_loss`` and ``bad_batch``.

``batch_size_dependent_loss``: the ``batch_size_loss`` finding (the loss moves by >= 1.5x at every
smaller-than-usual batch, all in one direction; seed case 004), strengthened when loss spikes fall on those
small batches (the spike period equals the steps per epoch). Or the ``accumulation_spill`` finding (0.85): updates
that applied more backward passes than the run's usual count, repeatedly (JoeyNMT PR 81: the batches left over at
an epoch's end join the next epoch's first group, each divided by the usual count). The same fault in another
form: the update's scale depends on how many batches it holds, at the epoch boundary. Counted, not inferred from
the loss, so it is separated from ``exploding_gradient``, ``lr_too_high`` and ``bad_batch``, whose larger steps
hold the usual number of batches.

``bad_batch``: at most ``MAX_BAD_BATCHES`` (3) isolated loss spikes or non-finite steps (a spike of warning, or
one of information at least ``BIG_SPIKE`` (10x) the loss before it and back above the run's first loss: an
isolated spike the run recovers from is information on the severity ladder, and one that undid the training is
this cause's evidence; smaller ones are minibatch noise),
after each of which the loss comes back to where it was (the median of the next points within 2x of the median
of the points before; counted in points, so a coarse ``logging_steps`` log reads like an every-step one), with
no sustained gradient growth before them and no periodic pattern. That is what a corrupt or mislabelled batch
looks like (PaLM, Chowdhery et al. 2022: spikes tied to particular batches that disappear when those batches
are skipped). The batch fingerprints, when recorded, identify the batches.

A spike where the logged LR jumped (a warm restart, SGDR) is the schedule's, not a batch's.

Separated from ``unscaled_data`` (a scale problem from step 0: the first loss is not a spike) and from
``exploding_gradient`` (a norm that stays up) by the recovery itself: 0.6 when every event recovered and the
gradient norm, where logged, did not run up (>= 3x) in the points before; 0.5 otherwise.
"""
from __future__ import annotations

import numpy as np

from trainguard.core.diagnosis.cause import Cause
from trainguard.core.diagnosis.course import column_change, recovery
from trainguard.core.diagnosis.rules._make import make_cause
from trainguard.core.diagnosis.run_view import RunView
from trainguard.core.findings import Severity

__all__ = ["batch_size_dependent_loss", "bad_batch"]

MAX_BAD_BATCHES = 3
BIG_SPIKE = 10.0
RUN_UP = 3.0
EPOCH_SHARE = 2 / 3
ORDINARY_LOSS = 100.0  # x a trivial predictor's loss (max(1, the targets' second moment)), as rules.gradients
# A spike the live detector itself tied to the batch size or to the LR is not a batch's fault.
_NOT_A_BATCH = ("batch_size_dependent_loss", "lr_too_high")


def batch_size_dependent_loss(view: RunView) -> Cause | None:
    found = view.of("batch_size_loss", Severity.WARNING)
    if not found:
        return _from_accumulation_spill(view) or _from_periodic_spikes(view)
    evidence = {**found[0].evidence, "separated_by": "the loss moves at every smaller-than-usual batch"}
    usual = evidence.get("usual_batch_size") or max((s.batch_size or 0) for s in view.stats)
    small_steps = {s.step for s in view.stats if s.batch_size and s.batch_size < usual}
    spikes = [f.step for f in view.of("loss_spike", Severity.WARNING)]
    on_small = [s for s in spikes if any(abs(s - t) <= 1 for t in small_steps)]  # momentum carries it one step
    evidence["spikes_on_small_batches"] = on_small[:8]
    confidence = 0.95 if on_small else 0.85
    return make_cause(view, "batch_size_dependent_loss", confidence, evidence, found[0].message)


def _from_accumulation_spill(view: RunView) -> Cause | None:
    found = view.of("accumulation_spill", Severity.WARNING)
    if not found:
        return None
    evidence = {**found[0].evidence,
                "separated_by": "updates counted to hold more backward passes than the usual accumulation group"}
    return make_cause(view, "batch_size_dependent_loss", 0.85, evidence, found[0].message)


def _from_periodic_spikes(view: RunView) -> Cause | None:
    """The doctor's ``periodic_spike`` finding: spikes once per period, on smaller batches (0.8) or at epoch
    ends without a batch-size column (0.55: the same bad batch at the end of every unshuffled epoch looks alike)."""
    found = view.of("periodic_spike", Severity.WARNING)
    if not found:
        return None
    evidence = dict(found[0].evidence)
    if evidence.get("pattern") == "smaller_batch":
        evidence["separated_by"] = "the periodic spikes fall on smaller-than-usual batches"
        return make_cause(view, "batch_size_dependent_loss", 0.8, evidence, found[0].message)
    if evidence.get("pattern") == "epoch_end" and not evidence.get("usual_batch_size"):
        return make_cause(view, "batch_size_dependent_loss", 0.55, evidence, found[0].message)
    return None


def bad_batch(view: RunView) -> Cause | None:
    spikes = {f.step for f in view.of("loss_spike") if f.evidence.get("cause") not in _NOT_A_BATCH
              and (f.severity >= Severity.WARNING or _undid_training(view, f.step))}
    events = sorted(spikes | set(view.nonfinite_steps))
    periodic = view.of("periodic_spike", Severity.WARNING)
    if periodic and periodic[0].evidence.get("pattern") in ("same_place_each_epoch", "not_whole_epochs") \
            and periodic[0].evidence.get("direction") != "dip":  # a bad batch raises the loss
        return make_cause(view, "bad_batch", 0.5, dict(periodic[0].evidence),
                          periodic[0].message + ": the same batch in every epoch?")
    if view.has("batch_size_loss", Severity.WARNING) or view.has("accumulation_spill", Severity.WARNING) or periodic:
        return None
    if not events or len(_episodes(events)) > MAX_BAD_BATCHES:
        return _once_per_epoch(view) or _abrupt_non_finite(view)
    if view.point_of(events[0]) < max(10, len(view.stats) // 20):
        # Trouble in the first points is a property of the run's start, not of one batch, unless the loss went
        # non-finite out of the blue.
        return _abrupt_non_finite(view)
    recovered, run_ups = [], []
    for step in events:
        at = view.point_of(step)
        lr_jump = column_change(view.lrs, at, 2)
        if lr_jump is not None and lr_jump >= 1.2:
            return None  # the LR jumped there (a warm restart): the schedule, not the batch
        back = recovery(view.losses, at)
        if back is None or not back["recovered"]:
            return _abrupt_non_finite(view)
        recovered.append({"step": step, "loss_before": back["loss_before"], "loss_after": back["loss_after"]})
        run_up = column_change(view.grad_norms, at - 1, 5)
        if run_up is not None:
            run_ups.append(run_up)
    by_step = {s.step: s for s in view.stats}
    fingerprints = {step: by_step[step].batch_fingerprint for step in events
                    if step in by_step and by_step[step].batch_fingerprint}
    evidence: dict = {"steps": events, "recovered": recovered}
    if run_ups:
        evidence["grad_norm_run_up"] = round(max(run_ups), 3)
    if fingerprints:
        evidence["batch_fingerprints"] = fingerprints
    if not run_ups or max(run_ups) < RUN_UP:
        evidence["separated_by"] = "isolated spikes that the loss recovered from, with no gradient run-up before"
    message = (f"isolated trouble at step(s) {', '.join(map(str, events))}, after which the loss came back: "
               f"the batch(es) at those steps look bad")
    return make_cause(view, "bad_batch", 0.6, evidence, message)


def _once_per_epoch(view: RunView) -> Cause | None:
    """One bad sample met once per epoch: >= 3 loss spikes (any severity), each in a different epoch, in at least
    ``EPOCH_SHARE`` (2/3) of the run's epochs, at different places in their epochs (a shuffled loader puts the
    sample in a different batch each time; a fault of the epoch's last batch falls at the same place), and the
    loss back to its level after each. Cross Validated 413205: one window of 32 left unstandardized (sigma 52)
    "almost always severely disrupted the model" each time it was drawn. The healthy corpus' spikes fall in at
    most 0.3 of its epochs, several in one."""
    spikes = [f for f in view.of("loss_spike") if f.evidence.get("cause") not in _NOT_A_BATCH]
    by_step = {s.step: s for s in view.stats}
    epochs = [by_step[f.step].epoch if f.step in by_step else None for f in spikes]
    run_epochs = {s.epoch for s in view.stats if s.epoch is not None}
    if len(spikes) < 3 or any(e is None for e in epochs) or len(set(epochs)) < len(epochs) \
            or len(epochs) < EPOCH_SHARE * len(run_epochs):
        return None
    starts = {e: min(s.step for s in view.stats if s.epoch == e) for e in set(epochs)}
    places = [f.step - starts[e] for f, e in zip(spikes, epochs)]
    if max(places) - min(places) <= 2:
        return None  # the same place in every epoch: the epoch's own structure, not a sample
    for f in spikes:
        back = recovery(view.losses, view.point_of(f.step))
        if back is None or not back["recovered"]:
            return None
    steps = [f.step for f in spikes]
    evidence = {"steps": steps[:8], "epochs": len(set(epochs)), "of_epochs": len(run_epochs),
                "places_in_epoch": places[:8],
                "separated_by": "one isolated spike in each of most epochs, at a different place each time"}
    message = (f"one loss spike in each of {len(set(epochs))} of the {len(run_epochs)} epochs, each at a different "
               f"step of its epoch, and the loss came back each time: one bad sample, met once per epoch")
    return make_cause(view, "bad_batch", 0.6, evidence, message)


def _abrupt_non_finite(view: RunView) -> Cause | None:
    """The loss went non-finite from an ordinary step: the loss and the gradient norm of the points before it
    within ``RUN_UP`` (3x) of their median (up to 20 points; the loss's first point counts), the last loss below
    ``ORDINARY_LOSS`` (100) times a trivial predictor's, no update larger than the weights in the last sampled
    step before it, and a first loss that is not off scale. The weights that
    computed it were finite and ordinary, so that batch's forward pass made the NaN (an empty sequence's 0/0, a
    log of 0: Open-Assistant PR 2438; PyTorch's anomaly mode looks for the op in that forward pass); an explosion or
    a learning rate too high grows the loss or the gradient first. The update that followed carries the NaN into
    the weights, so the run need not recover: 0.5, 0.55 when the statistics name the first non-finite tensor."""
    if not view.nonfinite_steps or view.first_loss_scale:
        return None
    step = view.nonfinite_steps[0]
    at = view.point_of(step)
    if at < 1 or view.steps[at] != step:
        return None
    for values in (view.losses, view.grad_norms):
        before = values[max(0, at - 20):at]
        before = before[np.isfinite(before)]
        if len(before) and float(np.median(before)) > 0 and before[-1] > RUN_UP * float(np.median(before)):
            return None
        if len(before) >= 3 and float(np.median(before)) > 0 and \
                float(np.max(before[-3:])) > RUN_UP * float(np.median(before)):
            return None
    if float(view.losses[at - 1]) >= ORDINARY_LOSS * max(1.0, view.targets_second_moment or 1.0):
        return None  # far above any trivial predictor's loss already: no ordinary step
    last = next((s for s in reversed(view.sampled) if s.step < step), None)
    if last is not None and any(l.update_ratio is not None and l.update_ratio >= 1.0 for l in last.layers
                                if l.name not in view.zero_initialized):
        return None
    where = next((f.where for f in view.of("non_finite") if f.step == step and f.where), None)
    evidence: dict = {"steps": [step], "loss_before": float(view.losses[at - 1]), "no_run_up": True}
    if where:
        evidence["first_non_finite"] = where
    message = (f"the loss went non-finite at step {step} from an ordinary step ({view.losses[at - 1]:.3g}, no "
               f"growth of the loss or the gradient before): that batch's forward pass made it (an empty "
               f"sequence, a log of 0, a division by 0)")
    return make_cause(view, "bad_batch", 0.55 if where else 0.5, evidence, message)


def _undid_training(view: RunView, step: int) -> bool:
    """The loss at ``step`` is >= ``BIG_SPIKE`` times the median of the (up to 20) losses before it and back
    above where training started (the median of its first 3 losses): the batch undid what was learnt. A near-zero
    loss that jumps 10x to a value still far below the start is minibatch noise of a converged run."""
    at = view.point_of(step)
    finite = view.losses[np.isfinite(view.losses)]
    before = view.losses[max(0, at - 20):at]
    before = before[np.isfinite(before)]
    loss = view.losses[at]
    if len(before) < 2 or len(finite) < 3 or not np.isfinite(loss) or float(np.median(before)) <= 0:
        return False
    return bool(loss >= BIG_SPIKE * float(np.median(before)) and loss >= float(np.median(finite[:3])))


def _episodes(steps: list[int], gap: int = 5) -> list[list[int]]:
    """Groups steps that lie within ``gap`` of each other into one episode."""
    groups: list[list[int]] = []
    for step in steps:
        if groups and step - groups[-1][-1] <= gap:
            groups[-1].append(step)
        else:
            groups.append([step])
    return groups
