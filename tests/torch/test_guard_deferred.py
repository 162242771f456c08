"""The deferred fetch (how the guard runs on GPU) tested on CPU: statistics reach the detectors in order,
findings carry their own steps, and close() reads the steps still pending. On CPU a step's values are read for
free, so the guard still reads what it needs at once (``_read_free``); the tests of the accelerator's path switch
that off, and the last tests check the CPU's own batched mode."""
from __future__ import annotations

from typing import NamedTuple

import pytest
import torch

import trainguard
from trainguard.core.detector import Detector, chain
from trainguard.core.detectors import default_detectors

from _guard_runs import seed003_data, seed003_model, train


class Seen(NamedTuple):
    steps: tuple[int, ...]


def recorder() -> Detector:
    """A detector that raises nothing and remembers the steps it saw, in order."""
    return Detector("recorder", lambda: Seen(()), lambda stats, state: ((), Seen(state.steps + (stats.step,))))


def _run(fetch_every: int, epochs: int = 3, poison_at: int | None = None, as_on_gpu: bool = True):
    model, optimizer = seed003_model()
    x, y = seed003_data()

    def poison(step: int, xb: torch.Tensor) -> torch.Tensor:
        return xb.masked_fill(torch.ones_like(xb, dtype=torch.bool), float("nan")) if step == poison_at else xb

    # budget=None: the reference run fetches and measures every step (the budget applies at fetch_every=1 only)
    guard = trainguard.Guard(model, optimizer, policy="observe", detectors=chain(recorder(), default_detectors()),
                             fetch_every=fetch_every, budget=None)
    guard._read_free = not as_on_gpu  # on an accelerator nothing is read between two fetches
    returned = []
    original_step = guard.step

    def step(*args, **kwargs):
        found = original_step(*args, **kwargs)
        returned.append((guard.step_count - 1, found))
        return found

    guard.step = step
    steps = train(model, optimizer, x, y, epochs=epochs, guard=guard, alter_batch=poison)
    pending_before_close = len(guard._pending)
    guard.close()
    return guard, steps, returned, pending_before_close


def test_deferred_fetch_gives_the_same_stream_and_findings_as_fetching_every_step():
    eager, eager_steps, _, _ = _run(fetch_every=1)
    deferred, steps, returned, pending = _run(fetch_every=5)
    assert steps == eager_steps
    assert pending == steps % 5 and pending > 0, "the run must end between two fetches for this test"
    assert deferred.monitor.state[0].steps == tuple(range(steps)), "in order, none lost, flushed at close"
    assert [s.to_dict() for s in deferred.history] == [s.to_dict() for s in eager.history]
    assert deferred.findings == eager.findings
    assert {f.code for f in deferred.findings} >= {"non_finite"}
    # findings come back only from the calls that fetched, every fifth step
    for step, found in returned:
        if (step + 1) % 5:
            assert found == ()
    assert [f for _, found in returned for f in found] == [
        f for f in deferred.findings if f.step < steps - pending]


class SkipNonFinite:
    """A user Repairer: skip every update whose loss or gradients are non-finite (one .item() per step)."""

    def before_update(self, ctx):
        return bool(ctx.finite)

    def after_update(self, stats, findings):
        return []

    def close(self):
        pass


def test_deferred_fetch_locates_the_nan_when_the_weights_are_still_those_of_its_step():
    model, optimizer = seed003_model()
    x, y = seed003_data(standardized=True)

    def break_first_layer(step: int, xb: torch.Tensor) -> torch.Tensor:
        if step == 6:
            with torch.no_grad():
                model[2].weight[0, 0] = float("inf")
        return xb

    guard = trainguard.Guard(model, optimizer, policy=SkipNonFinite(), fetch_every=4)
    guard._read_free = False  # as on an accelerator
    train(model, optimizer, x, y, epochs=1, guard=guard, alter_batch=break_first_layer, stop_on_nan=False)
    guard.close()
    assert [f.step for f in guard.findings if f.code == "non_finite"] == [6]
    assert guard.history[6].first_nonfinite_module == "2"
    assert [s.applied for s in guard.history][5:8] == [True, False, False]


def _run_cpu(fetch_every: int, poison_at: int):
    """A healthy run (standardized data) whose inputs turn NaN at ``poison_at``; returns the guard and, per step,
    what its ``step`` call returned."""
    model, optimizer = seed003_model()
    x, y = seed003_data(standardized=True)

    def poison(step: int, xb: torch.Tensor) -> torch.Tensor:
        return torch.full_like(xb, float("nan")) if step == poison_at else xb

    guard = trainguard.Guard(model, optimizer, policy="observe", fetch_every=fetch_every, budget=None)
    returned = {}
    original_step = guard.step

    def step(*args, **kwargs):
        at = guard.step_count
        returned[at] = original_step(*args, **kwargs)
        return returned[at]

    guard.step = step
    train(model, optimizer, x, y, epochs=3, guard=guard, alter_batch=poison)
    guard.close()
    return guard, returned


def test_batched_on_cpu_same_records_and_the_non_finite_step_at_once():
    """fetch_every > 1 on CPU: the same records and findings as every step, the quiet steps read in a batch, but
    a non-finite step located before its update and handed to the session at once."""
    eager, _ = _run_cpu(fetch_every=1, poison_at=12)
    batched, returned = _run_cpu(fetch_every=8, poison_at=12)
    assert len(batched.history) == len(eager.history) == 13  # the loop stops at the NaN
    assert [repr(s.to_dict()) for s in batched.history] == [repr(s.to_dict()) for s in eager.history]  # NaN != NaN
    assert repr(batched.findings) == repr(eager.findings)
    assert batched.history[12].first_nonfinite_module == "(inputs)"
    assert "non_finite" in {f.code for f in returned[12]}  # at its own step, not at the next fetch
    assert all(returned[step] == () for step in range(8, 12))  # the quiet steps since the last fetch wait


def test_fetch_every_is_validated():
    model, optimizer = seed003_model()
    with pytest.raises(ValueError, match="fetch_every"):
        trainguard.Guard(model, optimizer, fetch_every=0)
