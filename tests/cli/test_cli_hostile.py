"""Hostile and careless input to ``trainguard doctor | report | diff``: one line on stderr, exit 2, no traceback,
and the user's files untouched (issue 13, F1-F8)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from trainguard.cli import main

HEADER = {"type": "header", "schema": "trainguard.runlog", "version": 1, "created": "2026-12-04T00:00:00+00:00",
          "framework": "torch 2.13.0", "config": {"policy": "observe"}, "parameters": ["fc.weight"]}


def run_log(path, *records, header=HEADER):
    lines = [header, *({"type": "step", "step": i, "loss": 1.0 / (i + 1)} for i in range(20)), *records]
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in lines))
    return path


def cli(capsys, *args):
    code = main([*map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, *needles):
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err and "please report" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]


DEEP = '{"a":' * 100_000 + "1" + "}" * 100_000


@pytest.mark.parametrize("command", ["report", "diff", "doctor"])
def test_deeply_nested_first_line_is_one_line_error(tmp_path, capsys, command):
    # F1: RecursionError from is_runlog / read_runlog.
    path = tmp_path / "deep.jsonl"
    path.write_text(DEEP + "\n")
    args = [command, path, path] if command == "diff" else [command, path]
    code, _, err = cli(capsys, *args)
    one_line_error(code, err, "deep.jsonl")


def test_deeply_nested_record_inside_a_run_log_is_one_skipped_line(tmp_path, capsys):
    path = run_log(tmp_path / "run.jsonl", DEEP)
    code, out, err = cli(capsys, "report", path)
    assert code == 0 and "line 22: unreadable record" in out and "Traceback" not in err


@pytest.mark.parametrize("version", ['"x"', "null", "[1]", "1e400", "true"])
@pytest.mark.parametrize("command", ["report", "diff", "doctor"])
def test_unreadable_header_version_is_one_line_error(tmp_path, capsys, command, version):
    # F2: ValueError / TypeError / OverflowError from int(header["version"]).
    path = tmp_path / "run.jsonl"
    path.write_text('{"type":"header","schema":"trainguard.runlog","version":' + version + '}\n'
                    '{"type":"step","step":0,"loss":1.0}\n')
    args = [command, path, path] if command == "diff" else [command, path]
    code, _, err = cli(capsys, *args)
    one_line_error(code, err, "not a whole number")


def test_report_survives_records_of_the_wrong_shape(tmp_path, capsys):
    # F3: a finding with "where": 5 (NotRenderableError), an end without status (KeyError), a string config
    # (AttributeError); rich markup in a message must be shown, not interpreted.
    header = {**HEADER, "config": "observe"}
    path = run_log(tmp_path / "run.jsonl",
                   {"type": "finding", "code": "loss_spike", "severity": "warning", "step": 3, "where": 5,
                    "evidence": {}, "message": "m"},
                   {"type": "finding", "code": "loss_spike", "severity": "warning", "step": 4, "where": "fc",
                    "evidence": {}, "message": "loss [/bold] jumped [red]"},
                   {"type": "end", "steps": 20}, header=header)
    code, out, err = cli(capsys, "report", path)
    assert code == 0, err
    assert "status: ?" in out and "loss [/bold] jumped [red]" in out
    assert "line 22: unreadable record: TypeError" in out
    assert "header field 'config' has the wrong type" in out


def test_huge_integer_loss_reads_as_infinity_in_report_diff_and_doctor(tmp_path, capsys):
    # F4: OverflowError in StepStats.from_dict; the doctor rejected the whole file for one value.
    path = run_log(tmp_path / "run.jsonl", '{"type":"step","step":20,"loss":' + "9" * 401 + "}")
    code, out, err = cli(capsys, "report", path)
    assert code == 0 and "last inf" in out and "Traceback" not in err
    code, out, err = cli(capsys, "doctor", path, "--json")
    run = json.loads(out)["runs"][0]
    assert "error" not in run and "Traceback" not in err
    code, _, err = cli(capsys, "diff", path, path)
    one_line_error(code, err, "no per-layer statistics")  # refused for the right reason, not a traceback


def test_html_of_losses_near_the_float_limit(tmp_path, capsys):
    # F5: OverflowError / NaN in line_plot's axis arithmetic for losses of 1e308.
    path = tmp_path / "huge.csv"
    path.write_text("step,loss\n" + "".join(f"{i},{1e308 if i % 2 else -1e308}\n" for i in range(200)))
    code, out, err = cli(capsys, "doctor", path, "--html", tmp_path / "r.html")
    assert code in (0, 1) and "Traceback" not in err, err
    page = (tmp_path / "r.html").read_text()
    assert "<svg" in page and "nan" not in page.lower().replace("nanoseconds", "")


@pytest.mark.parametrize("command", ["doctor", "diff"])
def test_html_onto_an_input_is_refused_and_the_input_kept(tmp_path, capsys, command):
    # F6: `doctor log.csv --html log.csv` exited 0 and replaced the log with HTML; `diff A B --html B` too.
    a, b = run_log(tmp_path / "a.jsonl"), run_log(tmp_path / "b.jsonl")
    before = b.read_bytes()
    args = [command, a, b, "--html", b] if command == "diff" else [command, a, b, "--html", b]
    code, _, err = cli(capsys, *args)
    one_line_error(code, err, "is one of the inputs")
    assert b.read_bytes() == before


def test_doctor_html_onto_a_log_found_in_a_searched_directory_is_refused(tmp_path, capsys):
    log = tmp_path / "runs" / "metrics.csv"
    log.parent.mkdir()
    log.write_text("step,loss\n0,1.0\n1,0.5\n")
    code, _, err = cli(capsys, "doctor", tmp_path / "runs", "--html", log)
    one_line_error(code, err, "is one of the inputs")
    assert log.read_text() == "step,loss\n0,1.0\n1,0.5\n"


def test_html_report_is_replaced_atomically(tmp_path, capsys, monkeypatch):
    # F7: a failed write (full disk) left a partial page in place of the previous report.
    from trainguard.io import files

    log = tmp_path / "log.csv"
    log.write_text("step,loss\n" + "".join(f"{i},{1.0 / (i + 1)}\n" for i in range(50)))
    report = tmp_path / "r.html"
    report.write_text("previous report")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", disk_full)
    code, _, err = cli(capsys, "doctor", log, "--html", report)
    one_line_error(code, err, "cannot write", "No space left")
    assert report.read_text() == "previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv", "r.html"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
@pytest.mark.parametrize("command", ["doctor", "report"])
def test_fifo_is_read_once_as_a_stream(tmp_path, capsys, command):
    # F8: a FIFO hung the doctor; a pipe was read twice (once to sniff) and called empty.
    source = run_log(tmp_path / "src.jsonl")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(source.read_bytes()))
    writer.start()
    code, out, err = cli(capsys, command, fifo)
    writer.join()
    assert code in (0, 1) and "Traceback" not in err, err
    assert "20" in out and str(fifo) in out


@pytest.mark.skipif(not os.path.exists("/bin/bash"), reason="process substitution needs bash")
def test_process_substitution_is_read_once(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("step,loss\n" + "".join(f"{i},{1.0 / (i + 1)}\n" for i in range(100)))
    script = f'{sys.executable} -m trainguard.cli doctor --json <(cat "{log}")'
    done = subprocess.run(["/bin/bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)["runs"][0]
    assert "error" not in run and run["steps"] == 100


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
@pytest.mark.parametrize("command", ["report", "doctor"])
def test_endless_device_is_refused_at_the_cap(capsys, monkeypatch, command):
    from trainguard.io import files

    monkeypatch.setattr(files, "MAX_STREAM_BYTES", 1 << 20)
    code, _, err = cli(capsys, command, "/dev/zero")
    one_line_error(code, err, "longer than 1 MiB")


def test_output_into_a_closed_pipe_stops_quietly(tmp_path, monkeypatch, capsys):
    # `trainguard doctor --json log | head` ended in a BrokenPipeError traceback.
    log = tmp_path / "log.csv"
    log.write_text("step,loss\n" + "".join(f"{i},{1.0 / (i + 1)}\n" for i in range(50)))
    read_end, write_end = os.pipe()
    os.close(read_end)
    with open(write_end, "w") as closed_pipe:
        monkeypatch.setattr(sys, "stdout", closed_pipe)
        code = main(["doctor", "--json", str(log)])
        monkeypatch.undo()
    assert code == 141 and "Traceback" not in capsys.readouterr().err


def test_a_column_name_with_a_line_break_stays_a_one_line_error(tmp_path, capsys):
    # A JSON table whose only "columns" are a header's keys, one of them a carriage return: the doctor's
    # "no loss column" error lists the columns, and the name must not break the line.
    path = tmp_path / "run.jsonl"
    path.write_text('{"type": "header", "schema": null, "framework": {"\\r": null, "a\\nb": 1}}\n')
    code, _, err = cli(capsys, "doctor", path)
    one_line_error(code, err, "no loss column")
    assert "\\r" in err
