"""A healthy run whose data distribution changes on purpose (issue 11's "curriculum / data-distribution switch",
issue 16's "no false repairs") must get no warning and no repair. The development part's permuted-task switch
(``benchmarks/corpus/healthy/torch_permuted_task_switch.py``: Goodfellow et al. 2013's permuted inputs; the loss
jumps from 6e-4 to 5.6 at step 600 and, unguarded, is back under 0.01 fifty steps later) is run here through the
benchmark's own code, in the test process (~8 s of CPU).

The watchers are quiet on it. ``auto`` is not yet: the gradient norm jumps ~600x at the switch (0.008 -> 4.8).
``skip_outliers`` and ``escalate`` leave the switch alone now (the norm is back within 10x the largest norm the run
applied at its start, 4.6x; the loss is learned down, not climbing), and with ``clip_outliers`` and ``adam_guard``
taken out of the chain ``auto`` ends bitwise the unguarded run. Those two still act: ``clip_outliers`` clips 44 of
the 45 steps from the switch to step 644 to 0.55 (its 512-norm window holds the fit run's ~0.01 norms), and
``adam_guard`` caps Adam's update from the switch on (an update RMS of 5.5 on the clipped gradient, 16 on the
unclipped one, over its threshold 5: ``v`` remembers the smaller gradients). The run then trains well (final loss
3.5e-4 against the unguarded 7.2e-4) but is not left alone. That check is marked ``xfail(strict=True)`` with the
figures measured, so it fails the day it is fixed: then remove the mark.
"""
from __future__ import annotations

import pytest

from benchmarks.corpus.registry import discover
from benchmarks.corpus.run_one import run_case
from benchmarks.diagnosis import score_case

CASE_NAME = "torch_permuted_task_switch"


@pytest.fixture(scope="module")
def case():
    (found,) = [c for c in discover() if c.name == CASE_NAME]
    assert not found.held_out  # the held-out part is never run by a test
    return found


def test_a_task_switch_gets_no_warning_live_or_from_the_doctor(case, tmp_path):
    record = run_case(case.path, "observe", tmp_path / "observe")
    assert record["status"] == "ok", record.get("error", "")
    row = score_case(case, {"observe": record})
    assert not row["live"]["detected"], f"live: {row['live']['worst']}"
    assert row["doctor"]["ran"] and not row["doctor"]["detected"], f"doctor: {row['doctor']['worst']}"


@pytest.mark.xfail(strict=True, reason="measured 2026-12-04: 45 actions (44 clipped steps from 600, clip_outliers; "
                                       "1 adam_guard cap at 600), no skip, no stop")
def test_a_task_switch_is_left_alone_by_auto(case, tmp_path):
    runs = {v: run_case(case.path, v, tmp_path / v) for v in ("auto", "unguarded")}
    row = score_case(case, runs)
    assert not row["auto_stopped"], "auto stopped a healthy run"
    assert row["acted_on"] is False, f"auto acted: {row['auto_actions']} actions"
