import json
import math

import pytest

from trainguard.core import Action, Finding, LayerStats, Severity, StepStats, TensorSummary
from trainguard.io.runlog import RunLogError, RunLogWriter, read_runlog


def _stats(step, loss):
    return StepStats(step=step, loss=loss, epoch=0, batch_size=32, lrs=(0.01,), grad_norm=1.5,
                     loss_finite=math.isfinite(loss),
                     layers=(LayerStats("fc1.weight", grad_norm=1.0, weight_norm=2.0, update_ratio=1e-3),),
                     inputs=TensorSummary(0.0, 1.0, 3.0), eval_mode_modules=("bn1",))


def test_round_trip_keeps_every_record(tmp_path):
    path = tmp_path / "run.jsonl"
    w = RunLogWriter(path, framework="torch", config={"policy": "observe"}, parameters=["fc1.weight"])
    w.step(_stats(0, 1.0))
    w.step(_stats(1, float("nan")))
    f = Finding("non_finite", Severity.ERROR, 1, "fc1.weight", {"loss": float("nan")}, "nan")
    w.finding(f)
    w.action(Action("skip_step", 1, "non_finite", {}, {"loss_before": 1.0}))
    w.close()
    log = read_runlog(path)
    assert [s.step for s in log.steps] == [0, 1]
    assert log.steps[0] == _stats(0, 1.0)
    assert math.isnan(log.steps[1].loss) and not log.steps[1].loss_finite
    assert log.findings[0].code == "non_finite" and log.findings[0].severity is Severity.ERROR
    assert log.actions[0].kind == "skip_step"
    assert log.end == {"status": "ok", "steps": 2}
    assert log.problems == []
    # every line is valid strict JSON (no bare NaN)
    for line in path.read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in run log"))


def test_crash_loses_at_most_the_line_being_written(tmp_path):
    path = tmp_path / "run.jsonl"
    w = RunLogWriter(path)
    for i in range(5):
        w.step(_stats(i, 1.0 / (i + 1)))
    # Simulate a crash mid-write: the file is readable without close(), and a torn last line is skipped.
    with open(path, "a") as f:
        f.write('{"type":"step","step":5,"lo')
    log = read_runlog(path)
    assert [s.step for s in log.steps] == [0, 1, 2, 3, 4]
    assert log.end is None
    assert len(log.problems) == 1 and "truncated" in log.problems[0]


def test_second_run_appended_to_same_file_is_read_and_first_kept(tmp_path):
    path = tmp_path / "run.jsonl"
    for n in (3, 2):
        w = RunLogWriter(path)
        for i in range(n):
            w.step(_stats(i, 1.0))
        w.close()
    log = read_runlog(path)
    assert len(log.steps) == 2
    assert "more than one run" in log.problems[0]
    assert path.read_text().count('"type":"header"') == 2


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"step,loss\n1,2\n", "header"),
    (b"\xff\xfe\x00garbage", "UTF-8"),
])
def test_bad_files_raise_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(RunLogError, match=message) as info:
        read_runlog(path)
    assert "\n" not in str(info.value)


def test_diagnosis_record_round_trips_causes_and_dicts(tmp_path):
    from trainguard.core.diagnosis import Cause
    from trainguard.core.diagnosis.fixes import fix_for
    cause = Cause("lr_too_high", 0.8, {"step": 12}, fix_for("lr_too_high", "torch"), "loss diverged at lr 1.0")
    path = tmp_path / "run.jsonl"
    w = RunLogWriter(path)
    w.step(_stats(0, 1.0))
    w.diagnosis([cause, {"code": "unscaled_data", "confidence": 0.4}])
    w.close()
    log = read_runlog(path)
    assert log.diagnosis == [json.loads(json.dumps(cause.to_dict())), {"code": "unscaled_data", "confidence": 0.4}]
    assert Cause.from_dict(log.diagnosis[0]) == cause
    assert log.problems == [] and log.end == {"status": "ok", "steps": 1}


def test_log_without_diagnosis_record_reads_none_and_a_malformed_one_is_a_problem(tmp_path):
    path = tmp_path / "run.jsonl"
    w = RunLogWriter(path)
    w.close()
    assert read_runlog(path).diagnosis is None
    with open(path, "a") as f:
        f.write('{"type":"diagnosis","causes":"lr_too_high"}\n')
    log = read_runlog(path)
    assert log.diagnosis is None and "line 3" in log.problems[0]


def test_second_writer_on_an_open_log_is_refused_and_nothing_interleaves(tmp_path):
    # F13: two guards on one log path interleaved their records silently into one "run".
    from trainguard.io.runlog import RunLogInUseError
    path = tmp_path / "run.jsonl"
    first = RunLogWriter(path)
    first.step(_stats(0, 1.0))
    with pytest.raises(RunLogInUseError, match="another trainguard guard") as info:
        RunLogWriter(path)
    assert "\n" not in str(info.value)
    first.step(_stats(1, 0.5))
    first.close()
    log = read_runlog(path)
    assert [s.step for s in log.steps] == [0, 1] and log.problems == []
    RunLogWriter(path).close()  # closed, the log takes the next run


def test_second_process_on_an_open_log_is_refused(tmp_path):
    import subprocess
    import sys
    path = tmp_path / "run.jsonl"
    writer = RunLogWriter(path)
    code = ("import sys; from trainguard.io.runlog import RunLogWriter, RunLogInUseError\n"
            "try:\n    RunLogWriter(sys.argv[1])\nexcept RunLogInUseError as e:\n    print(e); sys.exit(3)\n")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    writer.close()
    assert done.returncode == 3 and "another trainguard guard" in done.stdout, done.stderr


@pytest.mark.parametrize("content", ["step,loss\n0,1.0\n", '{"loss": 1.0}\n', "notes\n"])
def test_writer_refuses_a_file_that_is_not_a_run_log(tmp_path, content):
    # F14: Guard(..., log="metrics.csv") appended JSON lines to the user's CSV.
    path = tmp_path / "metrics.csv"
    path.write_text(content)
    with pytest.raises(RunLogError, match="something other than a trainguard run log"):
        RunLogWriter(path)
    assert path.read_text() == content
    RunLogWriter(tmp_path / "empty.jsonl").close()  # an empty or new file is fine
    (tmp_path / "blank.jsonl").write_text("")
    RunLogWriter(tmp_path / "blank.jsonl").close()
    assert read_runlog(tmp_path / "blank.jsonl").problems == []


def test_writer_after_a_torn_last_line_starts_on_a_line_of_its_own(tmp_path):
    path = tmp_path / "run.jsonl"
    w = RunLogWriter(path)
    w.step(_stats(0, 1.0))
    w._file.write(b'{"type":"step","step":1,"lo')  # the process died mid-line
    w._file.close()
    w._file = None
    w = RunLogWriter(path)
    w.step(_stats(0, 2.0))
    w.close()
    log = read_runlog(path)
    assert [s.loss for s in log.steps] == [2.0] and log.end == {"status": "ok", "steps": 1}


@pytest.mark.parametrize("version", ['"x"', "null", "[1]", "1e400", "true", "1.5"])
def test_header_version_that_is_not_a_whole_number_is_one_line_error(tmp_path, version):
    # F2
    path = tmp_path / "run.jsonl"
    path.write_text('{"type":"header","schema":"trainguard.runlog","version":' + version + '}\n')
    with pytest.raises(RunLogError, match="not a whole number"):
        read_runlog(path)


def test_huge_integers_read_as_infinity_and_wrong_types_skip_the_record(tmp_path):
    # F4: a 401-digit loss raised OverflowError out of StepStats.from_dict.
    path = tmp_path / "run.jsonl"
    RunLogWriter(path).close()
    with open(path, "a") as f:
        f.write('{"type":"step","step":0,"loss":' + "9" * 401 + ',"grad_norm":-' + "9" * 401 + '}\n')
        f.write('{"type":"step","step":"1","loss":1.0}\n')
        f.write('{"type":"step","step":2,"loss":true}\n')
        f.write('{"type":"step","step":' + "9" * 30 + ',"loss":1.0}\n')
        f.write('{"type":"step","step":3,"layers":[{"name":5}]}\n')
    log = read_runlog(path)
    assert [(s.step, s.loss, s.grad_norm) for s in log.steps] == [(0, math.inf, -math.inf)]
    assert [p.split(":")[0] for p in log.problems] == ["line 4", "line 5", "line 6", "line 7"]


def test_overlong_line_is_skipped_in_bounded_reads_and_the_rest_is_read(tmp_path, monkeypatch):
    import trainguard.io.runlog as runlog
    path = tmp_path / "run.jsonl"
    w = RunLogWriter(path)
    w.step(_stats(0, 1.0))
    w.event("note", 0, text="x" * 5000)
    w.step(_stats(1, 0.5))
    w.close()
    monkeypatch.setattr(runlog, "MAX_LINE_BYTES", 1024)
    log = read_runlog(path)
    assert [s.step for s in log.steps] == [0, 1] and log.end is not None
    assert len(log.problems) == 1 and log.problems[0].startswith("line 3: longer than")


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="POSIX fork")
def test_closing_releases_the_lock_even_while_a_forked_child_holds_the_file(tmp_path):
    # DataLoader workers are forked with the open log; a closed guard must not keep the path locked for them.
    import os
    path = tmp_path / "run.jsonl"
    writer = RunLogWriter(path)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the child holds its copy of the log's file until the parent has checked
        os.close(write_end)
        os.read(read_end, 1)
        os._exit(0)
    os.close(read_end)
    try:
        writer.close()
        RunLogWriter(path).close()
    finally:
        os.write(write_end, b"x")
        os.close(write_end)
        os.waitpid(child, 0)


def test_record_of_an_unknown_type_is_skipped_without_a_problem(tmp_path):
    # A later minor addition (as the diagnosis record was) must not make the log look damaged, nor diff refuse it.
    path = tmp_path / "run.jsonl"
    w = RunLogWriter(path)
    w.step(_stats(0, 1.0))
    w._write({"type": "from_the_future", "anything": [1, 2]})
    w.step(_stats(1, 0.5))
    w.close()
    log = read_runlog(path)
    assert [s.step for s in log.steps] == [0, 1] and log.problems == []
