"""The run log a real guarded run writes reads back to the same statistics, findings and end status."""
from __future__ import annotations

import torch

import trainguard
from trainguard.io.runlog import read_runlog

from _guard_runs import seed003_data, seed003_model, train


def test_runlog_round_trip_of_a_real_run(tmp_path):
    path = tmp_path / "runs" / "exp.jsonl"
    model, optimizer = seed003_model()
    x, y = seed003_data()
    with trainguard.Guard(model, optimizer, policy="observe", log=path, preset="full") as guard:
        steps = train(model, optimizer, x, y, epochs=3, guard=guard)
    log = read_runlog(path)
    assert not log.problems
    assert log.header["framework"] == f"torch {torch.__version__}"
    assert log.header["config"] == {"policy": "observe", "preset": "full"}
    assert log.header["parameters"] == [name for name, _ in model.named_parameters()]
    assert len(log.steps) == steps == guard.step_count
    assert [s.to_dict() for s in log.steps] == [s.to_dict() for s in guard.history]
    # evidence round-trips through JSON (a non-finite number comes back as its string), the rest exactly
    assert [(f.code, f.severity, f.step, f.where, f.message, sorted(f.evidence)) for f in log.findings] == [
        (f.code, f.severity, f.step, f.where, f.message, sorted(f.evidence)) for f in guard.findings]
    assert len({(f.code, f.step) for f in log.findings}) == len(log.findings), "each finding logged once"
    assert log.steps[-1].loss_finite is False and log.steps[-1].first_nonfinite_grad is not None
    assert log.steps[0].layers and log.steps[0].inputs is not None
    assert log.end == {"status": "ok", "steps": steps}


def test_an_exception_in_the_loop_closes_the_log_with_status_error(tmp_path):
    path = tmp_path / "exp.jsonl"
    model, optimizer = seed003_model()
    try:
        with trainguard.Guard(model, optimizer, policy="observe", log=path):
            raise KeyError("user bug")
    except KeyError:
        pass
    assert read_runlog(path).end["status"] == "error"
