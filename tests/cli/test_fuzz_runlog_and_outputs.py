"""Fuzzing with hypothesis (issue 13): run logs with fields of any JSON type, deep nesting, huge numbers and
stray bytes through the reader, ``report``, ``doctor`` and ``diff``; and the CLI's ``--html`` output paths. Whatever
the input: a report, or exit 2 with one line on stderr; never a traceback, never a changed input file."""
from __future__ import annotations

import io
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from trainguard.cli import main
from trainguard.io.runlog import RunLogError, read_runlog
from trainguard.report.console import print_run_summary

FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.integers().map(lambda i: i * 10**400),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(["nan", "inf", "-inf", "1e400", "", "x"]),
    st.text(max_size=6),
)
value = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                     st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                     max_leaves=8)
FIELDS = {
    "step": ["step", "loss", "epoch", "batch_size", "lrs", "grad_norm", "loss_finite", "grads_finite",
             "first_nonfinite_grad", "layers", "activations", "eval_mode_modules", "inputs", "buffers", "extra",
             "applied", "batch_fingerprint"],
    "finding": ["code", "severity", "step", "where", "evidence", "message"],
    "action": ["kind", "step", "reason", "params", "effect"],
    "event": ["kind", "step", "message"],
    "end": ["status", "steps"],
    "diagnosis": ["causes"],
    "header": ["schema", "version", "config", "parameters", "framework"],
}
GOOD = {"step": 3, "loss": 0.5, "epoch": 0, "batch_size": 8, "lrs": [0.1], "grad_norm": 1.0, "code": "loss_spike",
        "severity": "warning", "where": "fc", "evidence": {}, "message": "m", "kind": "clip", "reason": "x",
        "params": {}, "effect": {}, "status": "ok", "steps": 3, "schema": "trainguard.runlog", "version": 1,
        "config": {}, "parameters": ["fc.weight"], "framework": "torch",
        "layers": [{"name": "fc.weight", "grad_norm": 1.0}], "causes": []}


@st.composite
def record(draw):
    kind = draw(st.sampled_from([*FIELDS, "mystery"]))
    out = {"type": kind}
    for key in FIELDS.get(kind, ["x"]):
        if draw(st.booleans()):  # half the fields sound, half of any type
            if key in GOOD:
                out[key] = GOOD[key]
        else:
            out[key] = draw(value)
    return out


@st.composite
def run_log_bytes(draw):
    header = {"type": "header", "schema": "trainguard.runlog", "version": 1, "config": {"policy": "observe"},
              "parameters": ["fc.weight"], "framework": "torch"}
    if draw(st.booleans()):
        header.update(draw(record().filter(lambda r: r["type"] == "header")))
    lines = [json.dumps(header)]
    lines += [json.dumps({"type": "step", "step": i, "loss": 1.0 / (i + 1)}) for i in range(draw(st.integers(0, 5)))]
    lines += [json.dumps(r) for r in draw(st.lists(record(), max_size=8))]
    raw = "\n".join(lines).encode()
    tail = draw(st.one_of(st.just(b"\n"), st.binary(max_size=12),
                          st.just(b'\n{"type":"step","step":9,"loss":' + b"[" * 5000 + b"\n"),
                          st.just(b'\n' + b'{"a":' * 20_000 + b"1" + b"}" * 20_000 + b"\n")))
    return raw + tail


def _one_line_or_ok(code, err):
    assert "Traceback" not in err and "please report" not in err, err
    if code == 2:
        assert len([line for line in err.splitlines() if line.strip()]) == 1, err
    else:
        assert code in (0, 1), (code, err)


@FUZZ
@given(data=run_log_bytes())
def test_run_log_reader_and_report_never_raise(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "run.jsonl"
    path.write_bytes(data)
    try:
        log = read_runlog(path)
    except RunLogError as e:
        assert "\n" not in str(e)
        return
    out = io.StringIO()
    print_run_summary(log, Console(file=out, width=200))
    assert "diagnosis failed" not in out.getvalue(), out.getvalue()
    assert all(isinstance(s.step, int) and (s.loss is None or isinstance(s.loss, float)) for s in log.steps)


@FUZZ
@given(data=run_log_bytes())
def test_cli_on_fuzzed_run_logs_reports_or_says_one_line(tmp_path_factory, capsys, data):
    path = tmp_path_factory.mktemp("fuzz") / "run.jsonl"
    path.write_bytes(data)
    for argv in (["report", path], ["doctor", "--json", path], ["diff", "--json", path, path]):
        code = main([str(a) for a in argv])
        _one_line_or_ok(code, capsys.readouterr().err)
    assert path.read_bytes() == data


OUTPUTS = ["input", "./input", "absolute input", "symlink to input", "hard link to input", "other input",
           "directory", "missing directory", "fresh", "existing report"]


def _output(choice, folder, source, other):
    if choice == "input":
        return source.name
    if choice == "./input":
        return f"./{source.name}"
    if choice == "absolute input":
        return str(source)
    if choice in ("symlink to input", "hard link to input"):
        link = folder / "link.html"
        if not link.exists():
            link.symlink_to(source) if choice.startswith("symlink") else link.hardlink_to(source)
        return str(link)
    if choice == "other input":
        return str(other)
    if choice == "directory":
        return str(folder)
    if choice == "missing directory":
        return str(folder / "no" / "such" / "r.html")
    if choice == "existing report":
        (folder / "r.html").write_text("old report")
    return str(folder / "r.html")


@FUZZ
@given(choice=st.sampled_from(OUTPUTS), command=st.sampled_from(["doctor", "diff"]))
def test_html_output_path_never_replaces_an_input_and_is_whole_or_absent(tmp_path_factory, capsys, monkeypatch,
                                                                          choice, command):
    folder = tmp_path_factory.mktemp("out")
    a, b = folder / "a.jsonl", folder / "b.jsonl"
    for path in (a, b):
        path.write_text(json.dumps({"type": "header", "schema": "trainguard.runlog", "version": 1,
                                    "parameters": ["fc.weight"]}) + "\n" + "".join(
            json.dumps({"type": "step", "step": i, "loss": 1.0 / (i + 1),
                        "layers": [{"name": "fc.weight", "grad_norm": 1.0}]}) + "\n" for i in range(20)))
    before = {p: p.read_bytes() for p in (a, b)}
    monkeypatch.chdir(folder)
    output = _output(choice, folder, b, a)
    code = main([command, str(a), str(b), "--html", output])
    err = capsys.readouterr().err
    _one_line_or_ok(code, err)
    assert {p: p.read_bytes() for p in (a, b)} == before
    assert not list(folder.glob(".*.tmp"))
    written = folder / "r.html"
    if choice in ("fresh", "existing report"):
        assert code in (0, 1) and written.read_text().startswith("<!DOCTYPE html>")
        assert written.read_text().endswith("</html>\n")
    elif choice == "missing directory":
        assert code == 2 and "cannot write" in err
    else:
        assert code == 2 and ("is one of the inputs" in err or "is a directory" in err)
