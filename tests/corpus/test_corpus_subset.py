"""A fast subset of the diagnosis corpus, run through the benchmark's own code (``run_one.run_case`` runs a case
and reads its logs; ``benchmarks.diagnosis.score_case`` scores it), in the test process.

The subset is chosen by rule, from the development part only (the held-out third is never run here): the first
faulty case of each cause and the first healthy case of each framework, alphabetically, among the cases whose
runs for this test took at most ``FAST_S`` CPU seconds each on average (imports excluded) when the benchmark last
measured them (``tests/corpus/run_seconds.json``, written by ``python -m benchmarks.diagnosis --part all
--write-seconds``; a case not measured there is not fast). What is asserted is what issue 11 asks of every case:

- healthy: no live finding at warning or above under ``observe``; ``auto`` ends bitwise equal to an unguarded run
  and logs no action;
- faulty: a live finding at warning or above, and the live diagnosis's top cause is the case's cause.

Where trainguard gets a case wrong today, ``KNOWN_WRONG`` marks that check ``xfail(strict=True)`` with the figure
measured: the file states what is true now, and a check that starts to pass fails until its mark is removed.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks.corpus.registry import CaseFile, declared_fields, discover, is_held_out
from benchmarks.corpus.run_one import run_case
from benchmarks.diagnosis import score_case

SECONDS_FILE = Path(__file__).with_name("run_seconds.json")
FAST_S = 5.0
# The variants each kind runs here.
RUNS = {"faulty": ("observe",), "healthy": ("observe", "auto", "unguarded")}

# (case, check) -> what trainguard does today, as measured. Remove an entry when its check passes.
KNOWN_WRONG: dict[tuple[str, str], str] = {}


def fast_subset(cases: list[CaseFile], seconds: dict[str, dict[str, float | None]],
                fields_of=declared_fields) -> list[CaseFile]:
    chosen: dict[tuple[str, str], CaseFile] = {}
    for case in sorted(cases, key=lambda c: (c.kind, c.name)):
        measured = seconds.get(case.name, {})
        cost = sum(measured.get(v) if measured.get(v) is not None else math.inf for v in RUNS[case.kind])
        if case.held_out or cost > FAST_S * len(RUNS[case.kind]):
            continue
        fields = fields_of(case)
        key = str(fields.get("cause") if case.kind == "faulty" else fields.get("framework"))
        chosen.setdefault((case.kind, key), case)
    return list(chosen.values())


def _params(kind: str, check: str) -> list:
    seconds = json.loads(SECONDS_FILE.read_text(encoding="utf-8")) if SECONDS_FILE.is_file() else {}
    params = []
    for case in fast_subset(discover(), seconds):
        if case.kind != kind:
            continue
        known = KNOWN_WRONG.get((case.name, check))
        marks = [pytest.mark.xfail(strict=True, reason=known)] if known else []
        params.append(pytest.param(case, id=case.name, marks=marks))
    return params


def _run(case: CaseFile, variant: str, tmp_path: Path) -> dict:
    record = run_case(case.path, variant, tmp_path / variant)
    assert record["status"] == "ok", f"{case.name} {variant}: {record['status']}: {record.get('error', '')}"
    return record


@pytest.mark.parametrize("case", _params("healthy", "quiet"))
def test_healthy_recipe_raises_no_warning_live(case, tmp_path):
    row = score_case(case, {"observe": _run(case, "observe", tmp_path)})
    assert not row["live"]["detected"], f"healthy run flagged: {row['live']['worst']}"


@pytest.mark.parametrize("case", _params("healthy", "untouched"))
def test_healthy_recipe_is_left_alone_by_auto(case, tmp_path):
    row = score_case(case, {v: _run(case, v, tmp_path) for v in ("auto", "unguarded")})
    assert row["acted_on"] is False, (f"auto acted on a healthy run: {row['auto_actions']} actions, "
                                      f"parameters {'equal' if row['auto_equal'] else 'differ'}")


@pytest.mark.parametrize("case", _params("faulty", "diagnosed"))
def test_faulty_case_is_detected_with_its_cause(case, tmp_path):
    row = score_case(case, {"observe": _run(case, "observe", tmp_path)})
    live = row["live"]
    assert live["detected"] and row["live_right"], (
        f"{case.name} ({row['cause']}): detected={live['detected']} (worst {live['worst']}), "
        f"top cause {live['top']} ({live['confidence']:.2f})")


def test_fast_subset_rule():
    """First by name per cause / framework, development part only, measured and fast only."""
    declared = {"f_b": ("faulty", "lr_too_high"), "f_a": ("faulty", "lr_too_high"), "f_e": ("faulty", "dead_relu"),
                "h_b": ("healthy", "torch"), "h_unmeasured": ("healthy", "keras_fit"),
                "keras_fit_deep_sigmoid": ("faulty", "vanishing_gradient")}  # held out (test_corpus_cases)
    seconds = {"f_b": {"observe": 1.0}, "f_a": {"observe": 2.0}, "f_e": {"observe": 99.0},
               "h_b": {"observe": 1.0, "auto": 9.0, "unguarded": 1.0}, "h_unmeasured": {},
               "keras_fit_deep_sigmoid": {"observe": 1.0}}
    cases = [CaseFile(name, kind, Path(f"{name}.py")) for name, (kind, _) in declared.items()]
    assert not any(is_held_out(n) for n in ("f_a", "f_b", "f_e", "h_b", "h_unmeasured"))
    chosen = fast_subset(cases, seconds, fields_of=lambda c: {"cause": declared[c.name][1],
                                                              "framework": declared[c.name][1]})
    assert [c.name for c in chosen] == ["f_a", "h_b"]
