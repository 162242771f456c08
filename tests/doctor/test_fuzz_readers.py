"""Fuzzing the readers and analyses with hypothesis: whatever the bytes, the doctor returns findings or a
one-line reason, never an exception."""
from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainguard.doctor import diagnose_file

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

cell = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32).map(repr),
    st.integers(-10**6, 10**6).map(str),
    st.sampled_from(["", "nan", "NaN", "inf", "-inf", "abc", "1e400", "0x10", " ", '"1.5"', "1,5"]),
)
header = st.lists(st.sampled_from(["step", "loss", "lr", "epoch", "val_loss", "grad_norm", "batch_size", "acc",
                                   "global_step", "train_loss", ""]), min_size=1, max_size=6)


def check(result) -> None:
    if result.error is not None:
        assert "\n" not in result.error and "could not analyse" not in result.error, result.error
    else:
        for f in result.findings:
            json.dumps(f.to_dict(), allow_nan=False)


@FUZZ
@given(names=header, rows=st.lists(st.lists(cell, min_size=0, max_size=7), max_size=60),
       tail=st.binary(max_size=8))
def test_csv_text(tmp_path_factory, names, rows, tail):
    path = tmp_path_factory.mktemp("fuzz") / "log.csv"
    text = ",".join(names) + "\n" + "".join(",".join(r) + "\n" for r in rows)
    path.write_bytes(text.encode() + tail)
    check(diagnose_file(path))


@FUZZ
@given(rows=st.lists(st.dictionaries(st.sampled_from(["step", "loss", "lr", "eval_loss", "epoch", "x"]),
                                     st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(),
                                               st.text(max_size=4), st.none(), st.booleans(),
                                               st.lists(st.integers(), max_size=2)), max_size=5),
                     max_size=60),
       cut=st.integers(0, 50))
def test_jsonl_and_trainer_state(tmp_path_factory, rows, cut):
    directory = tmp_path_factory.mktemp("fuzz")
    jsonl = directory / "log.jsonl"
    text = "".join(json.dumps(r) + "\n" for r in rows)
    jsonl.write_text(text[: max(0, len(text) - cut)])
    check(diagnose_file(jsonl))
    state = directory / "trainer_state.json"
    state.write_text(json.dumps({"log_history": rows})[: None if cut % 2 else -cut or None])
    check(diagnose_file(state))


@FUZZ
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes(tmp_path_factory, data):
    directory = tmp_path_factory.mktemp("fuzz")
    for name in ("a.csv", "a.jsonl", "trainer_state.json", "events.out.tfevents.1.x"):
        (directory / name).write_bytes(data)
        check(diagnose_file(directory / name))


@FUZZ
@given(losses=st.lists(st.one_of(st.floats(width=32), st.sampled_from([0.0, -1.0, 1e30, math.inf])),
                       min_size=1, max_size=300),
       steps=st.sampled_from(["increasing", "repeated", "backwards"]))
def test_odd_series_values(tmp_path_factory, losses, steps):
    path = tmp_path_factory.mktemp("fuzz") / "log.csv"
    n = len(losses)
    step_of = {"increasing": range(n), "repeated": [i // 3 for i in range(n)],
               "backwards": [i if i < n // 2 else i - n // 4 for i in range(n)]}[steps]
    path.write_text("step,loss\n" + "".join(f"{s},{v!r}\n" for s, v in zip(step_of, losses)))
    check(diagnose_file(path))


def test_a_carriage_return_inside_the_only_line(tmp_path):
    """Found by the fuzzer: b'\\x01\\r\\x01' made the csv module raise from the header line."""
    path = tmp_path / "a.csv"
    path.write_bytes(b"\x01\r\x01")
    check(diagnose_file(path))
