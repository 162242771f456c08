"""Readers: every format into the same RunSeries, column detection and overrides, bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest

from doctor_synth import (healthy, sick, write_csv, write_jsonl, write_keras_csv, write_lightning_csv,
                          write_tensorboard, write_trainer_state)
from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import StepStats
from trainguard.doctor import ReadError, find_logs, read_run
from trainguard.doctor.columns import detect_columns
from trainguard.io.runlog import RunLogWriter


@pytest.fixture(scope="module")
def run():
    return healthy(1, 400)


def test_csv_jsonl_trainer_state_and_tensorboard_agree(run, tmp_path):
    paths = [write_csv(run, tmp_path / "a.csv"), write_jsonl(run, tmp_path / "a.jsonl"),
             write_trainer_state(run, tmp_path / "trainer_state.json"), write_tensorboard(run, tmp_path / "tb")]
    for path in paths:
        series = read_run(path)
        np.testing.assert_array_equal(series.step, run["step"])
        np.testing.assert_allclose(series.loss, run["loss"], rtol=1e-6)
        np.testing.assert_allclose(series.lr, run["lr"], rtol=1e-6)
        np.testing.assert_allclose(series.eval_loss, run["eval_loss"], rtol=1e-6)
        np.testing.assert_array_equal(series.eval_step, run["eval_step"])
        assert series.problems == []


def test_trainer_state_summary_row_is_not_a_training_row(run, tmp_path):
    series = read_run(write_trainer_state(run, tmp_path / "trainer_state.json"))
    assert series.columns["loss"] == "loss" and len(series) == len(run["step"])
    assert series.columns["epoch"] == "epoch" and series.grad_norm is not None


def test_lightning_metrics_csv_splits_train_and_validation_rows(run, tmp_path):
    series = read_run(write_lightning_csv(run, tmp_path / "metrics.csv"))
    assert series.columns["loss"] == "train_loss_step" and series.columns["lr"] == "lr-Adam"
    assert len(series) == len(run["step"]) and not np.isnan(series.loss).any()
    np.testing.assert_allclose(series.eval_loss, run["eval_loss"], rtol=1e-6)
    assert series.problems == []


def test_keras_csvlogger_is_epoch_level(run, tmp_path):
    series = read_run(write_keras_csv(run, tmp_path / "log.csv"))
    assert series.columns["step"] == "epoch"
    assert len(series) == len(np.unique(run["epoch"]))
    assert series.eval_loss is not None and len(series.eval_loss) == len(series)


def test_runlog_steps_findings_and_actions(tmp_path):
    path = tmp_path / "run.jsonl"
    writer = RunLogWriter(path, framework="torch")
    for i in range(50):
        writer.step(StepStats(step=i, loss=1.0 / (i + 1), lrs=(0.01,), grad_norm=0.5))
    writer.step(StepStats(step=50, loss=float("nan"), loss_finite=False))
    writer.finding(Finding("exploding_gradient", Severity.ERROR, 49, "fc1.weight", {"grad_norm": 1e6}, "boom"))
    writer.close()
    series = read_run(path)
    assert series.format == "runlog" and len(series) == 51 and np.isnan(series.loss[-1])
    assert [f.code for f in series.logged_findings] == ["exploding_gradient"]


def test_column_overrides_and_unknown_override(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("it,objective,eta\n" + "".join(f"{i},{1 / (i + 1)},{0.1}\n" for i in range(30)))
    with pytest.raises(ReadError, match="no loss column"):
        read_run(path)
    series = read_run(path, {"loss": "objective", "lr": "eta"})
    assert series.columns == {"step": "it", "loss": "objective", "lr": "eta"}
    with pytest.raises(ReadError, match="no column 'nope'"):
        read_run(path, {"loss": "nope"})


def test_detection_prefers_step_over_epoch_and_knows_aliases():
    mapping = detect_columns(["Epoch", "global_step", "training_loss", "learning_rate", "val_loss", "grad_norm"])
    assert mapping == {"step": "global_step", "loss": "training_loss", "lr": "learning_rate",
                       "grad_norm": "grad_norm", "eval_loss": "val_loss", "epoch": "Epoch"}


def test_resumed_run_keeps_the_later_rows(tmp_path):
    path = tmp_path / "resumed.csv"
    rows = [(i, 2.0) for i in range(0, 60)] + [(i, 1.0) for i in range(40, 100)] + [(99, 0.5)]
    path.write_text("step,loss\n" + "".join(f"{s},{l}\n" for s, l in rows))
    series = read_run(path)
    np.testing.assert_array_equal(series.step, np.arange(100))
    assert series.loss[45] == 1.0 and series.loss[-1] == 0.5
    assert any("go back" in p for p in series.problems) and any("repeat" in p for p in series.problems)


def test_nan_strings_are_values_and_empty_cells_are_gaps(tmp_path):
    path = tmp_path / "n.csv"
    path.write_text("step,loss,grad_norm\n0,1.0,\n1,nan,inf\n2,,0.5\n3,0.5,NaN\n")
    series = read_run(path)
    np.testing.assert_array_equal(series.step, [0, 1, 3])
    assert np.isnan(series.loss[1]) and series.present["grad_norm"].tolist() == [False, True, True]


def test_truncated_and_mixed_files_are_partly_read(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("step,loss\n" + "".join(f"{i},{1.0}\n" for i in range(20)) + "20,abc\n21,0.9\n22")
    series = read_run(path)
    np.testing.assert_array_equal(series.step, list(range(20)) + [21])
    assert any("not numbers" in p for p in series.problems)
    assert any("truncated last line" in p for p in series.problems)
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text("".join(json.dumps({"step": i, "loss": 1.0}) + "\n" for i in range(10)) + '{"step": 10, "lo')
    series = read_run(jsonl)
    assert len(series) == 10 and series.problems == ["truncated last line; skipped"]


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"   \n\n", "empty file"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "binary data"),
    (bytes(range(128, 256)) * 40, "not UTF-8"),
    (b"step,loss\n", "header only"),
    (b"1,2\n3,4\n", "no header"),
    (b"step,accuracy\n1,0.5\n", "no loss column"),
])
def test_unreadable_csv_gets_one_line_message(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(ReadError, match=message) as info:
        read_run(path)
    assert "\n" not in str(info.value)


def test_unreadable_json_and_event_files(tmp_path):
    bad = tmp_path / "trainer_state.json"
    bad.write_text('{"log_history": [{"loss": 1')
    with pytest.raises(ReadError, match="not valid JSON"):
        read_run(bad)
    events = tmp_path / "events.out.tfevents.123.host"
    events.write_bytes(b"not an event file at all" * 10)
    with pytest.raises(ReadError, match="TensorBoard"):
        read_run(events)


def test_directory_search_finds_logs_and_keeps_the_newest_checkpoint(run, tmp_path):
    for n in (100, 200, 300):
        (tmp_path / "out" / f"checkpoint-{n}").mkdir(parents=True)
        write_trainer_state(run, tmp_path / "out" / f"checkpoint-{n}" / "trainer_state.json")
    (tmp_path / "out" / "config.json").write_text("{}")
    (tmp_path / ".hidden").mkdir()
    write_csv(run, tmp_path / ".hidden" / "x.csv")
    write_csv(run, tmp_path / "metrics.csv")
    found = find_logs([tmp_path])
    assert found == [tmp_path / "metrics.csv", tmp_path / "out" / "checkpoint-300" / "trainer_state.json"]
    write_trainer_state(run, tmp_path / "out" / "trainer_state.json")
    assert find_logs([tmp_path / "out"]) == [tmp_path / "out" / "trainer_state.json"]
    with pytest.raises(ReadError, match="no such file"):
        find_logs([tmp_path / "missing"])


def test_sick_run_survives_every_format(tmp_path):
    run = sick("non_finite", 2, 1000)
    for path in (write_csv(run, tmp_path / "a.csv"), write_jsonl(run, tmp_path / "a.jsonl"),
                 write_trainer_state(run, tmp_path / "trainer_state.json")):
        series = read_run(path)
        assert np.isnan(series.loss).sum() == np.isnan(run["loss"]).sum()


def test_nul_byte_and_unterminated_quote_late_in_a_file(tmp_path):
    path = tmp_path / "late.csv"
    body = "".join(f"{i},{1.0 / (i + 1)}\n" for i in range(5000))
    path.write_bytes(b"step,loss\n" + body.encode() + b"5000,\x000.1\n5001,\"0.2\n")
    series = read_run(path)
    assert series.step[-2:].tolist() == [4999, 5001]  # 5000 lost its loss to the NUL byte
    assert any("not numbers" in p for p in series.problems)


def test_runlog_findings_reach_the_diagnosis(tmp_path):
    from trainguard.doctor import diagnose_file

    path = tmp_path / "guarded.jsonl"
    writer = RunLogWriter(path, framework="torch")
    for i in range(200):
        writer.step(StepStats(step=i, loss=2.0 * 0.99 ** i, lrs=(0.01,), grad_norm=1.0))
    writer.finding(Finding("dead_relu", Severity.WARNING, 120, "fc1", {"dead_fraction": 0.9}, "dead units"))
    writer.close()
    result = diagnose_file(path)
    logged = [f for f in result.findings if f.evidence.get("source") == "run log"]
    assert [(f.code, f.step) for f in logged] == [("dead_relu", 120)]
    json.dumps([f.to_dict() for f in result.findings], allow_nan=False)


def test_names_of_tensorboard_tutorials_and_wandb_exports():
    assert detect_columns(["Loss/train", "Loss/val", "lr/group0"]) == {
        "loss": "Loss/train", "eval_loss": "Loss/val", "lr": "lr/group0"}
    assert detect_columns(["Step", "run-1 - train/loss", "run-1 - train/loss__MIN", "run-1 - eval/loss"]) == {
        "step": "Step", "loss": "run-1 - train/loss", "eval_loss": "run-1 - eval/loss"}
    assert detect_columns(["epoch", "epoch_loss", "epoch_learning_rate"]) == {
        "loss": "epoch_loss", "lr": "epoch_learning_rate", "epoch": "epoch"}


def test_semicolons_decimal_commas_and_crlf(tmp_path):
    path = tmp_path / "eu.csv"
    path.write_bytes(b"step;loss\r\n0;1,5\r\n1;1,25\r\n")
    series = read_run(path)
    assert series.loss.tolist() == [1.5, 1.25] and series.problems == []


def test_truncated_tensorboard_file_is_read_to_the_cut_and_says_so(run, tmp_path):
    # Issue 13: a TensorBoard file cut at 11% was read as 33 of 300 steps with no parse warning.
    whole = write_tensorboard(run, tmp_path / "tb")
    assert not any("truncated" in p for p in read_run(whole).problems)
    data = whole.read_bytes()
    cut = tmp_path / "cut" / whole.name
    cut.parent.mkdir()
    cut.write_bytes(data[:len(data) * 11 // 100])
    series = read_run(cut)
    assert 0 < len(series) < len(read_run(whole))
    assert any(p.startswith("event file truncated") for p in series.problems), series.problems


def test_a_gan_log_with_one_loss_per_optimizer_reads_the_first_and_says_which(tmp_path):
    path = tmp_path / "gan.csv"
    rows = "".join(f"{i},{0.7 + 0.01 * (i % 3)},{0.9 - 0.001 * i},1.0\n" for i in range(50))
    path.write_text("step,loss_d,loss_g,val_loss_g\n" + rows, encoding="utf-8")
    series = read_run(path)
    assert series.columns["loss"] == "loss_d"
    assert any("--loss-col loss_g" in p for p in series.problems)
    assert read_run(path, {"loss": "loss_g"}).loss[0] == pytest.approx(0.9)
    from trainguard.doctor import diagnose_file

    result = diagnose_file(path)
    assert result.error is None
    assert [f.severity for f in result.findings if f.code == "parse"] == [Severity.INFO]
