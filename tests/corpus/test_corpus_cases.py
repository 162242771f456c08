"""Every corpus case follows the protocol (benchmarks/corpus/case.py), and holdout.json records the held-out
third that the sha256 rule picks from the cases present."""
from __future__ import annotations

import json

import pytest

from benchmarks.corpus.case import KINDS, Case
from benchmarks.corpus.registry import HOLDOUT_FILE, discover, holdout_record, is_held_out, load_case

CASES = discover()


@pytest.mark.parametrize("case_file", CASES, ids=[c.name for c in CASES])
def test_case_module_declares_a_valid_case(case_file):
    module = load_case(case_file)
    case = module.CASE
    assert isinstance(case, Case)  # Case validates kind, framework and cause code when it is built
    assert case.name == case_file.name, f"CASE.name {case.name!r} is not the file name {case_file.name!r}"
    assert case.kind == case_file.kind, f"a {case.kind} case in the {case_file.kind}/ folder"
    assert case.source.strip(), "a case names its source"
    if case.kind == "faulty":
        assert case.symptom.strip() and case.fix.strip(), "a faulty case says what was seen and what fixed it"
    assert callable(getattr(module, "run", None))


def test_case_names_are_unique_across_parts():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))


def test_holdout_file_agrees_with_the_rule_and_the_cases_present():
    recorded = json.loads(HOLDOUT_FILE.read_text(encoding="utf-8"))
    expected = holdout_record(CASES)
    assert recorded["rule"] == expected["rule"]
    for kind in KINDS:
        assert all(is_held_out(name) for name in recorded[kind]), f"{kind}: a listed case the rule keeps in dev"
        missing = sorted(set(expected[kind]) - set(recorded[kind]))
        # A name listed whose file is absent is tolerated: a case being written in another checkout.
        assert not missing, (f"benchmarks/corpus/holdout.json lacks the held-out {kind} cases {missing}: run "
                             "`python -m benchmarks.diagnosis --write-holdout` and commit it")


def test_holdout_rule_is_the_recorded_sha256_rule():
    # sha256("keras_fit_deep_sigmoid") % 3 == 0, sha256("torch_step_decay") % 3 == 2: computed once by hand; a
    # change of the rule or of the name's encoding would move cases between the parts.
    assert is_held_out("keras_fit_deep_sigmoid") and not is_held_out("torch_step_decay")
    held = sum(is_held_out(f"case_{i}") for i in range(3000))
    assert 900 < held < 1100  # a third, give or take the binomial spread
