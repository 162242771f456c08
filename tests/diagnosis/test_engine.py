"""The engine's contract: ranked causes with evidence and fixes, JSON-ready, for both frameworks."""
from __future__ import annotations

import json
import math
import pathlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _diag_streams import explode, healthy, with_data
from trainguard.core.causes import CAUSES, cause_doc_link
from trainguard.core.diagnosis import (EXPLAINS, FIXES, RULES, Cause, StatsHistory, diagnose, fix_for, top_code)
from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import StepStats, TensorSummary

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "causes.md"


def _exploding_with_unscaled_inputs():
    stats = explode(with_data(healthy(60), inputs=TensorSummary(2.0, 1.16, 4.1)), start=30, nan_at=36)
    return stats, [Finding("exploding_gradient", Severity.ERROR, 32, "fc1.weight", {}, "")]


def test_every_cause_code_but_none_has_a_rule_and_a_fix():
    assert set(RULES) == set(CAUSES) - {"none", "uncertain"}  # "uncertain" is the engine's, not a rule's
    assert set(FIXES) == set(CAUSES) - {"none"}
    assert all(e.root in RULES and e.symptoms <= set(RULES) for e in EXPLAINS)


@pytest.mark.parametrize("code", sorted(FIXES))
def test_fix_text_has_the_framework_snippet_and_ends_with_its_doc_link(code):
    torch_text, keras_text = fix_for(code, "torch"), fix_for(code, "keras")
    assert str(torch_text).endswith(cause_doc_link(code)) and str(keras_text).endswith(cause_doc_link(code))
    assert torch_text.torch in str(torch_text) and torch_text.keras not in str(torch_text)
    assert keras_text.keras in str(keras_text)
    compile(torch_text.torch, f"{code}-torch", "exec")  # snippets are valid Python
    compile(keras_text.keras, f"{code}-keras", "exec")


def test_the_framework_picks_the_snippet_of_every_cause():
    stats, found = _exploding_with_unscaled_inputs()
    for framework in ("torch", "keras"):
        causes = diagnose(stats, found, framework=framework)
        assert causes and all(c.fix.framework == framework for c in causes)
    with pytest.raises(ValueError, match="unknown framework"):
        diagnose(stats, found, framework="jax")


def test_causes_are_ranked_and_json_ready_and_round_trip():
    stats, found = _exploding_with_unscaled_inputs()
    causes = diagnose(stats, found)
    assert [c.confidence for c in causes] == sorted((c.confidence for c in causes), reverse=True)
    assert all(0.0 <= c.confidence <= 1.0 and c.code in CAUSES and c.message for c in causes)
    text = json.dumps([c.to_dict() for c in causes], allow_nan=False)
    back = [Cause.from_dict(d) for d in json.loads(text)]
    assert [c.code for c in back] == [c.code for c in causes]
    assert back[0].doc == cause_doc_link(causes[0].code)


def test_top_code_is_none_for_an_empty_diagnosis():
    assert top_code([]) == "none"
    stats, found = _exploding_with_unscaled_inputs()
    assert top_code(diagnose(stats, found)) == "unscaled_data"


def test_min_confidence_filters():
    stats, found = _exploding_with_unscaled_inputs()
    assert diagnose(stats, found, min_confidence=0.99) == []


def test_findings_none_replays_the_default_detectors():
    stats = explode(healthy(60), start=30, nan_at=36)
    causes = diagnose(stats, None)
    assert any(c.code == "exploding_gradient" for c in causes)


def test_duplicate_findings_change_nothing():
    stats, found = _exploding_with_unscaled_inputs()
    assert diagnose(stats, found) == diagnose(stats, found + found)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(30, 400), noise=st.floats(0.0, 0.3),
       period=st.integers(5, 60), last=st.integers(1, 32))
def test_healthy_noisy_streams_never_get_a_cause(seed, n, noise, period, last):
    import numpy as np

    rng = np.random.default_rng(seed)
    stats = [StepStats(step=s.step, loss=s.loss * math.exp(rng.normal(0, noise)), batch_size=s.batch_size,
                       grad_norm=s.grad_norm, layers=s.layers, activations=s.activations,
                       eval_mode_modules=s.eval_mode_modules, inputs=s.inputs, targets=s.targets, lrs=s.lrs)
             for s in healthy(n, seed=seed, steps_per_epoch=period, last_batch=last)]
    assert diagnose(stats, []) == []


def test_history_keeps_head_tail_and_a_thinned_middle_within_bounds():
    history = StatsHistory(head=10, tail=20, middle=8)
    for i in range(10_000):
        history.append(StepStats(step=i))
    kept = [s.step for s in history]
    assert kept == sorted(kept) and len(history) == len(kept) <= 10 + 20 + 8
    assert kept[:10] == list(range(10)) and kept[-20:] == list(range(9980, 10_000))
    middle = kept[10:-20]
    gaps = {b - a for a, b in zip(middle, middle[1:])}
    assert len(middle) >= 4 and len(gaps) == 1  # evenly spread
    assert [history[i].step for i in range(len(history))] == kept and history[-1].step == 9999
    with pytest.raises(IndexError):
        history[len(history)]


def test_a_short_history_is_the_whole_run():
    history = StatsHistory()
    for i in range(100):
        history.append(StepStats(step=i))
    assert [s.step for s in history] == list(range(100)) and history[6].step == 6


def test_docs_have_an_entry_with_every_section_for_every_cause():
    entries = re.split(r"^## `([a-z_]+)`$", DOCS.read_text(encoding="utf-8"), flags=re.MULTILINE)[1:]
    sections = dict(zip(entries[::2], entries[1::2]))
    assert sorted(sections) == sorted(CAUSES)
    for code in CAUSES:
        assert cause_doc_link(code).endswith(f"#{code}")  # GitHub anchors a `code` heading as the bare code
        if code == "none":
            continue
        for heading in ("What you see", "Why it happens", "Evidence", "Fix", "PyTorch", "Keras", "Reproduce"):
            assert f"### {heading}" in sections[code] or f"#### {heading}" in sections[code], (code, heading)


_floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
_values = st.one_of(st.none(), _floats)


@st.composite
def _odd_step(draw, step):
    from trainguard.core.stats import ActivationStats, LayerStats

    names = draw(st.lists(st.sampled_from(["a.weight", "a.bias", "b.weight"]), max_size=3, unique=True))
    layers = tuple(LayerStats(name, grad_norm=draw(_values), update_ratio=draw(_values),
                              adam_update_rms=draw(_values), adam_sqrt_v_median=draw(_values)) for name in names)
    kinds = draw(st.lists(st.sampled_from([("r", "relu"), ("s", "sigmoid"), ("(output)", "output")]), max_size=3,
                          unique=True))
    acts = tuple(ActivationStats(name, kind, dead_fraction=draw(_values), saturated_fraction=draw(_values),
                                 output_std=draw(_values)) for name, kind in kinds)
    summary = st.one_of(st.none(), st.builds(TensorSummary, _floats, _floats, _floats))
    return StepStats(
        step=step, loss=draw(_values), grad_norm=draw(_values),
        batch_size=draw(st.one_of(st.none(), st.integers(0, 64))),
        lrs=tuple(draw(st.lists(st.floats(0, 1), max_size=2))), loss_finite=draw(st.booleans()), layers=layers,
        activations=acts, eval_mode_modules=draw(st.sampled_from([None, (), ("bn",)])), inputs=draw(summary),
        targets=draw(summary), extra={"val_loss": draw(_values)} if draw(st.booleans()) else {})


@settings(max_examples=15, deadline=None)
@given(data=st.data(), n=st.integers(0, 40))
def test_any_stream_of_odd_values_is_diagnosed_without_error(data, n):
    stats = [data.draw(_odd_step(step)) for step in range(n)]
    causes = diagnose(stats, None)
    assert all(c.code in CAUSES and 0.0 <= c.confidence <= 1.0 for c in causes)
    json.dumps([c.to_dict() for c in causes], default=str)
