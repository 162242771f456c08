"""The deferred fetch (how the guard runs on GPU) tested on CPU: statistics reach the detectors in order,
findings carry their own steps, and close() reads the steps still pending."""
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


def _run(fetch_every: int, epochs: int = 3, poison_at: int | None = None):
    model, optimizer = seed003_model()
    x, y = seed003_data()

    def poison(step: int, xb: torch.Tensor) -> torch.Tensor:
        return xb.masked_fill(torch.ones_like(xb, dtype=torch.bool), float("nan")) if step == poison_at else xb

    guard = trainguard.Guard(model, optimizer, policy="observe", detectors=chain(recorder(), default_detectors()),
                             fetch_every=fetch_every)
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
    train(model, optimizer, x, y, epochs=1, guard=guard, alter_batch=break_first_layer, stop_on_nan=False)
    guard.close()
    assert [f.step for f in guard.findings if f.code == "non_finite"] == [6]
    assert guard.history[6].first_nonfinite_module == "2"
    assert [s.applied for s in guard.history][5:8] == [True, False, False]


def test_fetch_every_is_validated():
    model, optimizer = seed003_model()
    with pytest.raises(ValueError, match="fetch_every"):
        trainguard.Guard(model, optimizer, fetch_every=0)
