"""Acceptance 1 and 2 of the repair issue, with real training: ``policy="auto"`` saves the two seed runs."""
from __future__ import annotations

import math

from trainguard.io.runlog import read_runlog

from _repair_runs import seed001_experiment2, seed003


def test_seed003_auto_is_finite_and_within_2x_of_hand_clipping(tmp_path):
    unguarded, _, _ = seed003(None, epochs=1)  # NaN at step 7; NaN arithmetic is slow on CPU
    assert math.isnan(unguarded)
    by_hand, _, _ = seed003(None, clip_by_hand=1.0)
    repaired, _, guard = seed003("auto", log=tmp_path / "run.jsonl")
    assert math.isfinite(repaired)
    assert repaired <= 2 * by_hand
    kinds = [a.kind for a in guard.actions]
    assert "rollback" in kinds and "stop" not in kinds
    log = read_runlog(tmp_path / "run.jsonl")
    assert [a.kind for a in log.actions] == kinds
    assert all("loss_after" in a.effect for a in log.actions)


def test_seed001_experiment2_nan_in_first_epoch_unguarded_and_auto_reaches_mse_below_005():
    unguarded, first_nan, _ = seed001_experiment2(None)
    assert math.isnan(unguarded) and first_nan is not None and first_nan < 5  # 5 batches per epoch
    repaired, _, guard = seed001_experiment2("auto")
    assert repaired < 0.05
    assert guard.actions
