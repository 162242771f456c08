"""``trainguard.diff(a, b)``: where two runs part ways, and why."""
from __future__ import annotations

import math
import os

from trainguard.core.stats import StepStats
from trainguard.diff.causes import CauseContext, agreement, name_cause
from trainguard.diff.compare import DEFAULT_RTOL, ForwardOrder, StepComparison, compare_step
from trainguard.diff.load import DiffInputError, check_layers_recorded, check_pair, load_run
from trainguard.diff.names import rename_step
from trainguard.diff.result import CATEGORIES, DiffResult, Difference, RunInfo
from trainguard.io.runlog import RunLog

__all__ = ["diff"]

RunSource = str | os.PathLike[str] | RunLog


def diff(a: RunSource, b: RunSource, *, rtol: float = DEFAULT_RTOL) -> DiffResult:
    """Compares run ``a`` (the reference) with run ``b`` step by step.

    ``a`` and ``b`` are run-log paths (or :class:`~trainguard.io.runlog.RunLog` objects) of the same model,
    ideally recorded with the guard's ``preset="forensic"``. Raises :class:`DiffInputError` (a one-line message)
    when they cannot be compared.

    >>> result = trainguard.diff("runs/fit.jsonl", "runs/loop.jsonl")     # doctest: +SKIP
    >>> result.verdict, result.cause.code, result.first_divergence.where  # doctest: +SKIP
    ('part', 'bn_inference_mode', 'bn1')
    """
    if not (isinstance(rtol, (int, float)) and math.isfinite(rtol) and rtol >= 0):
        raise DiffInputError(f"rtol must be a finite number >= 0, got {rtol!r}")
    check_layers_recorded(a, "A")
    check_layers_recorded(b, "B")
    log_a, log_b = load_run(a, "A"), load_run(b, "B")
    parameters, renamed = check_pair(log_a, log_b)
    steps_a = _by_step(log_a.steps)
    steps_b = _by_step([rename_step(s, renamed) for s in log_b.steps])
    compared = sorted(steps_a.keys() & steps_b.keys())
    order = ForwardOrder(parameters)
    comparisons = [compare_step(steps_a[s], steps_b[s], order, rtol) for s in compared]
    diverging = next((c for c in comparisons if c.differences), None)
    fingerprints = all(steps_a[s].batch_fingerprint and steps_b[s].batch_fingerprint for s in compared[:1])

    first_by_row: dict[str, int] = {}
    for c in comparisons:
        for d in c.differences:
            if d.where is not None:
                first_by_row.setdefault(d.where, c.step)
    first: Difference | None = None
    if diverging is None:
        cause = agreement()
    else:
        cause, first = name_cause(CauseContext(diverging.step, compared[0], diverging.differences, steps_a,
                                               steps_b, compared, fingerprints,
                                               {c.step: c.max_rel for c in comparisons}))
    rows = order.sorted([*parameters, *{buf.name for s in compared for buf in steps_a[s].buffers}])
    heat = [c for c in comparisons if c.row_max]  # the steps with per-layer or buffer statistics in both runs
    return DiffResult(
        verdict="agree" if diverging is None else "part",
        rtol=float(rtol),
        run_a=_info(log_a),
        run_b=_info(log_b),
        compared_steps=tuple(compared),
        layer_steps=sum(1 for s in compared if steps_a[s].layers and steps_b[s].layers),
        first_divergence=first,
        differences=diverging.differences if diverging else (),
        first_step_by_category=_first_by_category(comparisons),
        first_inexact_step=next((c.step for c in comparisons if c.max_rel > 0.0 or c.differences), None),
        cause=cause,
        layers=tuple((row, first_by_row.get(row)) for row in rows),
        heatmap_steps=tuple(c.step for c in heat),
        heatmap=tuple(tuple(c.row_max.get(row, math.nan) for c in heat) for row in rows),
        curves={"a": _curves(log_a), "b": _curves(log_b)},
        notes=tuple(_notes(log_a, log_b, steps_a, steps_b, compared, fingerprints, renamed)),
    )


def _by_step(steps: list[StepStats]) -> dict[int, StepStats]:
    out: dict[int, StepStats] = {}
    for stats in steps:
        out.setdefault(stats.step, stats)  # a step logged twice (a resumed run) is compared by its first record
    return out


def _info(log: RunLog) -> RunInfo:
    steps = [s.step for s in log.steps]
    return RunInfo(path=str(log.path), framework=str(log.header.get("framework", "")),
                   preset=(log.header.get("config") or {}).get("preset"), steps=len(steps),
                   first_step=min(steps), last_step=max(steps), status=(log.end or {}).get("status"))


def _first_by_category(comparisons: list[StepComparison]) -> dict[str, int | None]:
    first: dict[str, int | None] = dict.fromkeys(CATEGORIES)
    for c in comparisons:
        for d in c.differences:
            if first[d.category] is None:
                first[d.category] = c.step
    return first


def _curves(log: RunLog) -> dict[str, tuple[float | None, ...]]:
    return {"step": tuple(float(s.step) for s in log.steps),
            "loss": tuple(s.loss for s in log.steps),
            "grad_norm": tuple(s.grad_norm for s in log.steps)}


def _notes(log_a: RunLog, log_b: RunLog, steps_a: dict[int, StepStats], steps_b: dict[int, StepStats],
           compared: list[int], fingerprints: bool, renamed: dict[str, str]) -> list[str]:
    notes = []
    if renamed:
        shown = ", ".join(f"{b} -> {a}" for b, a in list(renamed.items())[:3])
        notes.append(f"B's names differ from A's by automatic numbering only ({shown}); B is reported under A's "
                     f"names")
    only_a, only_b = len(steps_a.keys() - steps_b.keys()), len(steps_b.keys() - steps_a.keys())
    if only_a or only_b:
        notes.append(f"steps recorded in one run only are not compared: {only_a} in A, {only_b} in B")
    if not fingerprints:
        notes.append("batch fingerprints are missing in at least one run, so the data order is not compared; "
                     "pass inputs= and targets= to the guard with preset='forensic'")
    if not any(steps_a[s].buffers for s in compared) and not any(steps_b[s].buffers for s in compared):
        notes.append("no BatchNorm running statistics recorded (no such layer, or not the forensic preset)")
    for label, log in (("A", log_a), ("B", log_b)):
        if log.end is None:
            notes.append(f"run {label} has no end record: it crashed, was killed or is still running")
        for problem in log.problems:
            notes.append(f"run {label}: {problem}")
    return notes
