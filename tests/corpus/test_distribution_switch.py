"""A healthy run whose data distribution changes on purpose (issue 11's "curriculum / data-distribution switch",
issue 16's "no false repairs") must get no warning and no repair. The development part's permuted-task switch
(``benchmarks/corpus/healthy/torch_permuted_task_switch.py``: Goodfellow et al. 2013's permuted inputs; the loss
jumps from 6e-4 to 5.6 at step 600 and, unguarded, is back under 0.01 fifty steps later) is run here through the
benchmark's own code, in the test process (~8 s of CPU).

The watchers are quiet on it, and ``auto`` leaves it alone, bitwise: the gradient norm jumps ~600x at the switch
(0.008 -> 4.8) but stays within 10x the largest norm the run applied at its start (4.6x), so ``skip_outliers``,
``clip_outliers`` and ``adam_guard`` (an update RMS of 16 at the switch) read it as the run's own range, and
``escalate`` watches the loss being learned down (finite, at most 2x the jump, a new low every few steps) without
an order. Before: 33 actions (21 skipped steps, 3 LR back-offs, 2 rollbacks) and a stop at step 672.
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


def test_a_task_switch_is_left_alone_by_auto(case, tmp_path):
    runs = {v: run_case(case.path, v, tmp_path / v) for v in ("auto", "unguarded")}
    row = score_case(case, runs)
    assert not row["auto_stopped"], "auto stopped a healthy run"
    assert row["acted_on"] is False, f"auto acted: {row['auto_actions']} actions"
