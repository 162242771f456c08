"""``trainguard doctor`` end to end: exit codes, the JSON schema, the HTML file, overrides, bad input."""
from __future__ import annotations

import json

import pytest

from doctor_synth import healthy, sick, write_csv, write_jsonl
from trainguard.cli import main
from trainguard.core.causes import CAUSES, cause_doc_link


def doctor(capsys, *args):
    code = main(["doctor", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_healthy_run_exits_0(tmp_path, capsys):
    code, out, _ = doctor(capsys, write_csv(healthy(3, 1500), tmp_path / "ok.csv"))
    assert code == 0 and "healthy" in out


def test_json_schema_and_fail_on(tmp_path, capsys):
    path = write_jsonl(sick("lr_too_high", 1), tmp_path / "sick.jsonl")
    code, out, _ = doctor(capsys, path, "--json")
    assert code == 1
    data = json.loads(out)
    assert set(data) == {"runs"} and data["runs"][0]["path"] == str(path)
    findings = data["runs"][0]["findings"]
    assert findings
    for f in findings:
        assert {"code", "severity", "step", "cause", "evidence", "fix"} <= set(f)
        assert f["cause"] in CAUSES and f["fix"].endswith(cause_doc_link(f["cause"]))
        assert f["severity"] in ("info", "warning", "error", "critical")
    assert any(f["code"] == "divergence" and f["cause"] == "lr_too_high" for f in findings)
    code, _, _ = doctor(capsys, path, "--fail-on", "critical")
    assert code == 0


def test_warning_fails_only_when_asked(tmp_path, capsys):
    path = write_csv(sick("periodic_spike", 2), tmp_path / "p.csv")
    assert doctor(capsys, path)[0] == 0
    assert doctor(capsys, path, "--fail-on", "warning")[0] == 1


def test_html_report_is_self_contained(tmp_path, capsys):
    html = tmp_path / "report.html"
    code, _, _ = doctor(capsys, write_csv(sick("periodic_spike", 2), tmp_path / "p.csv"), "--html", html)
    text = html.read_text()
    assert code == 0 and text.count("<svg") >= 4
    assert "<script" not in text and "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    assert "periodic_spike" in text and "position in epoch" in text


def test_unreadable_named_file_exits_2_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\xff\xfe\x00\x01")
    code, out, err = doctor(capsys, bad)
    assert code == 2 and "Traceback" not in out + err
    assert err == f"trainguard doctor: error: {bad}: binary data, not a text log\n"
    code, out, err = doctor(capsys, tmp_path / "missing.csv")
    assert code == 2 and err.count("\n") == 1 and "no such file" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = doctor(capsys, empty)
    assert code == 2 and "no log files" in err


def test_directory_with_a_stray_csv_still_diagnoses_the_logs(tmp_path, capsys):
    write_csv(healthy(4, 800), tmp_path / "run.csv")
    (tmp_path / "predictions.csv").write_text("id,label\n1,cat\n")
    code, _, err = doctor(capsys, tmp_path)
    assert code == 0 and "skipped" in err and "no loss column" in err


def test_column_override_flags(tmp_path, capsys):
    path = tmp_path / "odd.csv"
    path.write_text("t,objective\n" + "".join(f"{i},{1 / (i + 1)}\n" for i in range(50)))
    assert doctor(capsys, path)[0] == 2
    code, out, _ = doctor(capsys, path, "--loss-col", "objective", "--step-col", "t", "--json")
    assert code == 0 and json.loads(out)["runs"][0]["columns"]["loss"] == "objective"


def test_bad_severity_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["doctor", str(tmp_path), "--fail-on", "fatal"])
    assert info.value.code == 2


def test_bucket_means_of_losses_near_the_float_limit_do_not_overflow():
    import warnings

    import numpy as np

    from trainguard.doctor.console import bucket_means

    values = np.full(1000, 1e308)
    values[500] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow in the sums would warn
        means = bucket_means(values, width=10)
    assert means[0] == pytest.approx(1e308) and all(np.isfinite(m) for i, m in enumerate(means) if i != 5)
    assert np.isnan(means[5])
    assert bucket_means(np.array([1.0, 3.0] * 100), width=4) == [2.0] * 4
