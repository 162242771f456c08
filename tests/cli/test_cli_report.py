"""``trainguard report``: the run's diagnosis, from the guard's record or, for an older log, from its steps."""
from __future__ import annotations

import math

import pytest

from trainguard.cli import main
from trainguard.core.stats import StepStats, TensorSummary
from trainguard.diagnosis import diagnose_runlog
from trainguard.io.runlog import RunLogWriter


def _diverging_run(path, causes=None):
    """Unscaled inputs, then a loss and gradient that grow until they are NaN."""
    writer = RunLogWriter(path, framework="torch 2.13.0", config={"policy": "observe"})
    for i in range(80):
        grow = math.exp(0.15 * max(0, i - 40)) if i < 75 else math.nan
        writer.step(StepStats(step=i, loss=grow, lrs=(0.5,), grad_norm=grow, batch_size=32,
                              loss_finite=math.isfinite(grow), grads_finite=math.isfinite(grow),
                              inputs=TensorSummary(300.0, 500.0, 4000.0) if i < 3 else None))
    if causes is not None:
        writer.diagnosis(causes)
    writer.close()
    return path


def _report(capsys, path):
    # rich sizes tables to the terminal: COLUMNS (set by the autouse fixture) keeps each cell on one line
    code = main(["report", str(path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    return " ".join(out.split())


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")


def test_report_diagnoses_a_log_without_a_diagnosis_record(tmp_path, capsys):
    path = _diverging_run(tmp_path / "run.jsonl")
    causes = diagnose_runlog(path)
    assert causes, "the diverging run must have a cause for this test to mean anything"
    out = _report(capsys, path)
    assert "diagnosed from the log" in out
    for cause in causes:
        assert cause.code in out and f"{cause.confidence:.2f}" in out
        assert " ".join(cause.fix.summary.split()[:3]) in out


def test_report_shows_the_recorded_diagnosis_when_present(tmp_path, capsys):
    recorded = {"code": "lr_too_high", "confidence": 0.42, "message": "recorded at close",
                "fix": {"summary": "lower the learning rate tenfold"}}
    out = _report(capsys, _diverging_run(tmp_path / "run.jsonl", [recorded]))
    assert "recorded by the guard at close" in out
    assert "lr_too_high" in out and "0.42" in out and "recorded at close" in out
    assert "lower the learning rate tenfold" in out
    assert "unscaled_data" not in out  # the record, not a fresh diagnosis


def test_report_of_a_recorded_empty_diagnosis_says_no_cause(tmp_path, capsys):
    out = _report(capsys, _diverging_run(tmp_path / "run.jsonl", []))
    assert "recorded by the guard at close): no cause found" in out
