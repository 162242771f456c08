"""A run log read back from disk gives the same diagnosis as the live statistics."""
from __future__ import annotations

import pytest

from _diag_streams import explode, healthy, with_data
from trainguard.core.diagnosis import diagnose
from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import TensorSummary
from trainguard.diagnosis import diagnose_runlog
from trainguard.io.runlog import RunLogError, RunLogWriter


def _write(path, stats, findings, framework):
    writer = RunLogWriter(path, framework=framework)
    for s in stats:
        writer.step(s)
    for f in findings:
        writer.finding(f)
    writer.close()


def test_diagnosis_of_a_run_log_matches_the_live_one(tmp_path):
    stats = explode(with_data(healthy(60), inputs=TensorSummary(2.0, 1.16, 4.1)), start=30, nan_at=36)
    found = [Finding("exploding_gradient", Severity.ERROR, 32, "fc1.weight", {"grad_norm": 1e4}, "x"),
             Finding("non_finite", Severity.ERROR, 36, "fc1.weight", {}, "y")]
    _write(tmp_path / "run.jsonl", stats, found, "keras 3.6.0")
    from_disk = diagnose_runlog(tmp_path / "run.jsonl")
    live = diagnose(stats, found, framework="keras")
    assert [(c.code, c.confidence) for c in from_disk] == [(c.code, c.confidence) for c in live]
    assert from_disk[0].code == "unscaled_data" and from_disk[0].fix.framework == "keras"
    assert diagnose_runlog(tmp_path / "run.jsonl", framework="torch")[0].fix.framework == "torch"


def test_a_healthy_run_log_has_no_cause(tmp_path):
    _write(tmp_path / "ok.jsonl", healthy(100), [], "torch 2.13.0")
    assert diagnose_runlog(tmp_path / "ok.jsonl") == []


def test_not_a_run_log_is_a_one_line_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(RunLogError, match="not a trainguard run-log header"):
        diagnose_runlog(tmp_path / "notes.txt")
