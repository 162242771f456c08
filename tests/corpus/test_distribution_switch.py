"""A healthy run whose data distribution changes on purpose (issue 11's "curriculum / data-distribution switch",
issue 16's "no false repairs") must get no warning and no repair. The development part's permuted-task switch
(``benchmarks/corpus/healthy/torch_permuted_task_switch.py``: Goodfellow et al. 2013's permuted inputs; the loss
jumps from 6e-4 to 5.6 at step 600 and, unguarded, is back under 0.01 fifty steps later) is run here through the
benchmark's own code, in the test process (~8 s of CPU).

The watchers are quiet on it today. ``auto`` is not: the gradient norm jumps ~600x at the switch (0.008 -> 5), and
``skip_outliers`` never lets a norm above its threshold into its EMA, so it skips every later step (598 skipped
steps with ``escalate`` taken out of the chain); ``escalate`` sees a frozen model whose loss stays 20x over the
pre-switch median, and climbs skip -> clip -> LR back-off -> rollback -> stop. That check is marked
``xfail(strict=True)`` with the figure measured, so it fails the day it is fixed: then remove the mark.
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


@pytest.mark.xfail(strict=True, reason="measured 2026-12-04: 33 actions (21 skipped steps, 3 LR back-offs, "
                                       "2 rollbacks), training stopped at step 672 of 1,200")
def test_a_task_switch_is_left_alone_by_auto(case, tmp_path):
    runs = {v: run_case(case.path, v, tmp_path / v) for v in ("auto", "unguarded")}
    row = score_case(case, runs)
    assert not row["auto_stopped"], "auto stopped a healthy run"
    assert row["acted_on"] is False, f"auto acted: {row['auto_actions']} actions"
