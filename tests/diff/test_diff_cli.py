"""``trainguard diff`` on the command line: exit codes 0/1/2, --json, and one-line errors for bad input."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
from _diff_runs import PARAMETERS, write_run

from trainguard.cli import main
from trainguard.io.runlog import RunLogWriter


def _run(capsys, *argv):
    code = main(["diff", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_agree_exits_0_and_says_so(tmp_path, capsys):
    code, out, err = _run(capsys, write_run(tmp_path / "a.jsonl"), write_run(tmp_path / "b.jsonl"))
    assert code == 0 and "AGREE" in out and not err


def test_part_exits_1_and_names_step_layer_and_cause(tmp_path, capsys):
    b = write_run(tmp_path / "b.jsonl", edit=lambda s: replace(s, eval_mode_modules=("bn",)) if s.step >= 2 else s)
    code, out, _ = _run(capsys, write_run(tmp_path / "a.jsonl"), b)
    assert code == 1
    assert "PART at step 2" in out and "bn" in out and "bn_inference_mode" in out


def test_json_output_is_the_documented_structure(tmp_path, capsys):
    b = write_run(tmp_path / "b.jsonl", edit=lambda s: replace(s, lrs=(0.2,)) if s.step >= 3 else s)
    code, out, _ = _run(capsys, write_run(tmp_path / "a.jsonl"), b, "--json")
    document = json.loads(out)
    assert code == 1
    assert set(document) == {"schema", "version", "verdict", "rtol", "runs", "compared", "first_divergence",
                             "differences", "first_step_by_category", "first_inexact_step", "cause", "layers",
                             "notes"}
    assert document["first_divergence"] == {"step": 3, "category": "lr", "quantity": "lr", "where": None,
                                             "a": 0.1, "b": 0.2, "rel_diff": 0.5}
    assert document["cause"]["code"] == "lr_schedule" and document["cause"]["doc"].startswith("docs/diff.md#")
    assert [layer["name"] for layer in document["layers"]][:2] == ["fc1.weight", "fc1.bias"]


def _no_layers(path):
    return write_run(path, edit=lambda s: replace(s, layers=()))


def _other_model(path):
    return write_run(path, parameters=("conv.weight", *PARAMETERS[1:]))


def _header_only(path):
    RunLogWriter(path, framework="synthetic", parameters=PARAMETERS)._file.close()
    return path


def _cut_mid_line(path):
    text = write_run(path).read_text().splitlines(keepends=True)
    path.write_text("".join(text[:4]) + text[4][: len(text[4]) // 2])  # killed while writing line 5
    return path


def _corrupt_middle(path):
    lines = write_run(path).read_text().splitlines(keepends=True)
    lines[3] = '{"type": "step", "step": 2, "loss": \n'
    path.write_text("".join(lines))
    return path


def _not_a_runlog(path):
    path.write_text("step,loss\n0,1.0\n")
    return path


def _binary(path):
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    return path


def _later_steps(path):
    return write_run(path, edit=lambda s: replace(s, step=s.step + 1000))


@pytest.mark.parametrize("make_b, words", [
    (_other_model, "different models"),
    (_no_layers, "no per-layer statistics"),
    (_header_only, "no step records"),
    (_cut_mid_line, "truncated"),
    (_corrupt_middle, "damaged"),
    (_not_a_runlog, "not a trainguard run-log header"),
    (_binary, "not UTF-8"),
    (_later_steps, "share no step"),
    (lambda path: path, "no such file"),
    (lambda path: path.parent, "directory"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, make_b, words):
    b = make_b(tmp_path / "b.jsonl")
    code, out, err = _run(capsys, write_run(tmp_path / "a.jsonl"), b)
    assert code == 2 and not out
    assert err.count("\n") == 1 and err.startswith("trainguard diff: error: ") and words in err, err
    assert "Traceback" not in err


def test_bad_rtol_exits_2(tmp_path, capsys):
    a = write_run(tmp_path / "a.jsonl")
    code, _, err = _run(capsys, a, a, "--rtol", "-1")
    assert code == 2 and "--rtol" in err


def test_a_run_that_died_is_still_compared_and_noted(tmp_path, capsys):
    b = write_run(tmp_path / "b.jsonl", steps=6, close=False)
    code, out, _ = _run(capsys, write_run(tmp_path / "a.jsonl"), b)
    assert code == 0 and "no end record" in out and "in one run only" in out


@pytest.mark.parametrize("side", ["A", "B"])
def test_log_without_layer_statistics_is_refused_before_either_log_is_parsed(tmp_path, capsys, monkeypatch, side):
    # Issue 13: a 1M-step log without per-layer statistics cost 20 s and 1.1 GB to read before the refusal.
    import trainguard.diff.load as load

    parsed = []
    monkeypatch.setattr(load, "read_runlog", lambda path: parsed.append(path) or pytest.fail("parsed first"))
    a = _no_layers(tmp_path / "a.jsonl") if side == "A" else write_run(tmp_path / "a.jsonl")
    b = _no_layers(tmp_path / "b.jsonl") if side == "B" else write_run(tmp_path / "b.jsonl")
    code, _, err = _run(capsys, a, b)
    assert code == 2 and f"run {side}:" in err and "no per-layer statistics" in err and parsed == []


def test_a_record_type_from_a_later_minor_version_does_not_stop_the_comparison(tmp_path, capsys):
    b = write_run(tmp_path / "b.jsonl")
    with open(b, "a") as f:
        f.write('{"type":"from_the_future","causes":[]}\n')
    code, out, err = _run(capsys, write_run(tmp_path / "a.jsonl"), b)
    assert code == 0 and "AGREE" in out and not err
