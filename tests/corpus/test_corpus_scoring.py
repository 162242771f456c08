"""The benchmark's scoring on hand-made run records: what counts as detected, right, confidently wrong,
flagged and acted on (the definitions of docs/corpus.md)."""
from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.corpus.registry import CaseFile, is_held_out
from benchmarks.diagnosis import main, score_case, totals, within_2x


def _live(findings=(), causes=(), actions=()):
    return {"findings": [{"code": c, "severity": s, "count": 1, "first_step": 0, "log": "run.jsonl", "cause": None}
                         for c, s in findings],
            "causes": [{"code": c, "confidence": p, "log": "run.jsonl"} for c, p in causes],
            "actions": [{"kind": k, "count": 1, "first_step": 0, "log": "run.jsonl"} for k in actions]}


def _doctor(findings=(), columns=("step", "loss"), rows=100):
    return {"path": "metrics.csv", "columns": {c: c for c in columns}, "steps": rows,
            "findings": [{"code": c, "severity": s, "cause": cause, "count": 1, "first_step": step}
                         for c, s, cause, step in findings]}


def _record(meta, live=None, doctor=None, final_loss=1.0, fingerprint="f", status="ok", steps=100):
    record = {"status": status, "meta": meta, "wall_s": 1.0,
              "outcome": {"final_loss": final_loss, "fingerprint": fingerprint, "steps": steps}}
    if live is not None:
        record["live"] = live
    if doctor is not None:
        record["doctor"] = doctor
    return record


FAULTY = CaseFile("some_faulty_case", "faulty", Path("some_faulty_case.py"))
HEALTHY = CaseFile("some_healthy_case", "healthy", Path("some_healthy_case.py"))
LR_HIGH = {"cause": "lr_too_high", "framework": "torch"}


def test_faulty_right_live_and_confidently_wrong_doctor():
    runs = {"observe": _record(LR_HIGH, _live([("divergence", "error")], [("lr_too_high", 0.8)]),
                               _doctor([("non_finite", "error", "exploding_gradient", 9),
                                        ("loss_spike", "warning", "bad_batch", 3)])),
            "auto": _record(LR_HIGH, _live(actions=["lr_backoff"]), final_loss=0.3),
            "fixed": _record(LR_HIGH, final_loss=0.2),
            "fixed_observe": _record(LR_HIGH, _live([("loss_spike", "info")]), _doctor())}
    row = score_case(FAULTY, runs)
    assert row["live"]["detected"] and row["live_right"] and not row["live_confident_wrong"]
    # The doctor's worst finding names the cause (error beats an earlier warning); no confidence: an unhedged claim.
    assert row["doctor"]["top"] == "exploding_gradient" and row["doctor_confident_wrong"]
    assert row["signal_in_log"]  # lr_too_high shows in a loss/lr log
    assert not row["fixed_live_flagged"] and not row["fixed_doctor_flagged"]  # info is no alarm
    assert row["auto_within_2x"] is True and row["auto_actions"] == 1


def test_uncertain_and_weak_causes_are_not_confidently_wrong():
    for causes in ([("uncertain", 0.9)], [("bad_batch", 0.5)], []):
        row = score_case(FAULTY, {"observe": _record(LR_HIGH, _live([("loss_spike", "warning")], causes), _doctor())})
        assert not row["live_right"] and not row["live_confident_wrong"]
    row = score_case(FAULTY, {"observe": _record(LR_HIGH, _live(causes=[("uncertain", 0.9)]), _doctor())})
    assert row["live_uncertain"] and not row["live"]["detected"]


def test_gradient_causes_carry_their_signal_only_with_a_gradient_norm_column():
    meta = {"cause": "exploding_gradient", "framework": "hf"}
    plain = score_case(FAULTY, {"observe": _record(meta, _live(), _doctor())})
    with_norm = score_case(FAULTY, {"observe": _record(meta, _live(), _doctor(columns=("step", "loss",
                                                                                       "grad_norm")))})
    assert not plain["signal_in_log"] and with_norm["signal_in_log"]


def test_a_batch_cause_carries_its_signal_only_in_a_log_of_about_one_row_a_step():
    meta = {"cause": "bad_batch", "framework": "keras"}
    epoch_means = score_case(FAULTY, {"observe": _record(meta, _live(), _doctor(rows=6), steps=564)})
    per_step = score_case(FAULTY, {"observe": _record(meta, _live(), _doctor(rows=564), steps=564)})
    every_other = score_case(FAULTY, {"observe": _record(meta, _live(), _doctor(rows=282), steps=564)})
    assert not epoch_means["signal_in_log"] and per_step["signal_in_log"] and every_other["signal_in_log"]
    lr_high = score_case(FAULTY, {"observe": _record(LR_HIGH, _live(), _doctor(rows=6), steps=564)})
    assert lr_high["signal_in_log"]  # a divergence shows in epoch means too


def test_adam_epsilon_carries_its_signal_only_after_a_calm_phase_in_the_log():
    meta = {"cause": "adam_epsilon", "framework": "keras"}
    nan_from_start = score_case(FAULTY, {"observe": _record(meta, _live(), {**_doctor(rows=4), "finite_rows_first": 0})})
    calm_first = score_case(FAULTY, {"observe": _record(meta, _live(), {**_doctor(), "finite_rows_first": 60})})
    unknown = score_case(FAULTY, {"observe": _record(meta, _live(), _doctor())})  # a record from before the field
    assert not nan_from_start["signal_in_log"] and calm_first["signal_in_log"] and unknown["signal_in_log"]


def test_a_failed_observe_run_counts_as_not_detected():
    row = score_case(FAULTY, {"observe": {"status": "timeout", "error": "no result after 120 s", "wall_s": 120}})
    assert row["failed"] == ["observe"] and not row["live"]["detected"] and not row["doctor"]["detected"]
    assert totals([row])["faulty_detected_live"] == {"n": 0, "of": 1}


def test_healthy_acted_on_by_an_action_or_by_different_parameters():
    meta = {"cause": None, "framework": "torch"}
    quiet = _live([("loss_spike", "info")])
    same = score_case(HEALTHY, {"observe": _record(meta, quiet, _doctor()), "auto": _record(meta, _live()),
                                "unguarded": _record(meta)})
    differ = score_case(HEALTHY, {"auto": _record(meta, _live(), fingerprint="g"), "unguarded": _record(meta)})
    acted = score_case(HEALTHY, {"auto": _record(meta, _live(actions=["clip"])), "unguarded": _record(meta)})
    failed = score_case(HEALTHY, {"auto": {"status": "failed", "error": "x"}, "unguarded": _record(meta)})
    assert (same["acted_on"], differ["acted_on"], acted["acted_on"], failed["acted_on"]) == (False, True, True, None)
    assert not same["live"]["detected"]
    assert totals([same, differ, acted, failed])["healthy_acted_on"] == {"n": 2, "of": 3}


def test_a_healthy_run_with_a_confident_cause_counts_without_a_warning():
    meta = {"cause": None, "framework": "torch"}
    named = score_case(HEALTHY, {"observe": _record(meta, _live(causes=[("unscaled_data", 0.6)]), _doctor())})
    candidate = score_case(HEALTHY, {"observe": _record(meta, _live(causes=[("unscaled_data", 0.4)]), _doctor())})
    uncertain = score_case(HEALTHY, {"observe": _record(meta, _live(causes=[("uncertain", 0.9)]), _doctor())})
    assert not named["live"]["detected"]
    assert totals([named, candidate, uncertain])["healthy_confident_cause_live"] == {"n": 1, "of": 3}


@pytest.mark.parametrize("auto, fixed, expected", [(0.3, 0.2, True), (0.5, 0.2, False), (None, 0.2, False),
                                                   (-1.0, -2.0, True), (0.1, None, None)])
def test_within_2x_of_the_fixed_twin(auto, fixed, expected):
    assert within_2x(auto, fixed) is expected


@pytest.fixture
def split_corpus(tmp_path):
    """A corpus folder with two held-out and two development cases (never run here)."""
    held = [n for n in (f"case_{i}" for i in range(40)) if is_held_out(n)][:2]
    dev = [n for n in (f"case_{i}" for i in range(40)) if not is_held_out(n)][:2]
    for kind in ("faulty", "healthy"):
        (tmp_path / kind).mkdir()
    for name in held + dev:
        (tmp_path / "faulty" / f"{name}.py").write_text("")
    return tmp_path, held, dev


def test_dev_part_never_runs_nor_prints_a_held_out_case(split_corpus, monkeypatch, capsys):
    corpus, held, dev = split_corpus
    ran = []
    monkeypatch.setattr("benchmarks.diagnosis.run_cases",
                        lambda cases, *a, **k: ran.extend(c.name for c in cases) or {c.name: {} for c in cases})
    assert main(["--corpus", str(corpus), "--part", "dev"]) == 0
    out = capsys.readouterr().out
    assert sorted(ran) == sorted(dev) and not any(name in out for name in held)
    assert main(["--corpus", str(corpus), "--part", "dev", "--case", held[0]]) == 2
    assert "not in the dev part" in capsys.readouterr().err
    ran.clear()
    assert main(["--corpus", str(corpus), "--part", "holdout"]) == 0  # aggregates only
    out = capsys.readouterr().out
    assert sorted(ran) == sorted(held) and not any(name in out for name in held + dev) and "totals" in out
    assert main(["--corpus", str(corpus), "--case", "no_such_case"]) == 2
    assert "no case named" in capsys.readouterr().err


def test_case_repeated_selects_every_case_named(split_corpus, monkeypatch):
    corpus, _held, dev = split_corpus
    ran = []
    monkeypatch.setattr("benchmarks.diagnosis.run_cases",
                        lambda cases, *a, **k: ran.extend(c.name for c in cases) or {c.name: {} for c in cases})
    assert main(["--corpus", str(corpus), "--case", dev[0], "--case", dev[1]]) == 0
    assert sorted(ran) == sorted(dev)  # was: the last --case only
