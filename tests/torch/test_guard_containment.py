"""The guard never breaks training because of its own bug: the failure is contained, reported once, the
failing part is switched off and the run ends bitwise equal to an unguarded one. The user's own errors
(optimizer.step, bad arguments) still reach the user."""
from __future__ import annotations

import warnings

import pytest
import torch

import trainguard
from trainguard.adapters.torch import hooks
from trainguard.core.detector import Detector, chain
from trainguard.core.detectors import default_detectors
from trainguard.core.findings import Severity
from trainguard.io.runlog import read_runlog

from _guard_runs import same_tensors, seed003_data, seed003_model, train


def failing_detector(at_step: int) -> Detector:
    def update(stats, state):
        if stats.step == at_step:
            raise ZeroDivisionError("detector bug")
        return (), state + 1
    return Detector("failing", lambda: 0, update)


def _bare_run():
    model, optimizer = seed003_model()
    x, y = seed003_data(standardized=True)
    train(model, optimizer, x, y, epochs=2)
    return model


def _guarded_run(tmp_path, **guard_kwargs):
    model, optimizer = seed003_model()
    x, y = seed003_data(standardized=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        guard_kwargs = {"policy": "observe", **guard_kwargs}
        with trainguard.Guard(model, optimizer, log=tmp_path / "run.jsonl", **guard_kwargs) as guard:
            steps = train(model, optimizer, x, y, epochs=2, guard=guard)
    return model, guard, steps, [w for w in caught if "trainguard" in str(w.message)]


def test_a_detector_that_raises_is_contained_and_reported_once(tmp_path):
    model, guard, steps, caught = _guarded_run(tmp_path, detectors=chain(default_detectors(), failing_detector(3)))
    assert steps == 32 and guard.step_count == 32
    assert same_tensors(model, _bare_run())
    internal = [f for f in guard.findings if f.code == "guard_internal_error"]
    assert len(internal) == 1 and internal[0].step == 3 and internal[0].where == "detectors"
    assert internal[0].severity == Severity.WARNING and internal[0].evidence["error"] == "ZeroDivisionError"
    assert len(caught) == 1 and issubclass(caught[0].category, RuntimeWarning)
    log = read_runlog(tmp_path / "run.jsonl")
    # The monitor contains it per detector (core/monitor.py): the run log gets the finding, the others keep running.
    assert [f.code for f in log.findings if f.code == "guard_internal_error"] == ["guard_internal_error"]
    assert internal[0].evidence["detector"] == "failing" and "ZeroDivisionError" in internal[0].message
    assert len(log.steps) == 32, "statistics are still logged with the failing detector off"
    assert log.end["status"] == "ok"


def test_a_failing_activation_hook_never_breaks_the_users_forward(tmp_path, monkeypatch):
    def broken(*args):
        raise RuntimeError("hook bug")
    monkeypatch.setattr(hooks, "_health", broken)
    model, guard, steps, caught = _guarded_run(tmp_path, preset="full")
    assert steps == 32
    assert same_tensors(model, _bare_run())
    assert [f.where for f in guard.findings if f.code == "guard_internal_error"] == ["activation hooks"]
    assert len(caught) == 1
    assert all(not s.activations for s in guard.history) and all(s.layers for s in guard.history)
    assert not any(m._forward_hooks for m in model.modules())


def test_a_broken_run_log_is_contained(tmp_path):
    model, optimizer = seed003_model()
    x, y = seed003_data(standardized=True)
    with pytest.warns(RuntimeWarning, match="run log"):
        with trainguard.Guard(model, optimizer, policy="observe", log=tmp_path / "run.jsonl") as guard:
            guard.log._file.close()  # the disk went away under the run
            train(model, optimizer, x, y, epochs=1, guard=guard)
    assert guard.step_count == 16
    assert [f.where for f in guard.findings if f.code == "guard_internal_error"] == ["run log"]


class Exploding:
    """A repairer whose every hook raises."""

    def before_update(self, ctx):
        raise ValueError("repairer bug")

    def after_update(self, stats, findings):
        raise ValueError("repairer bug")

    def close(self):
        raise ValueError("repairer bug")


def test_a_failing_repairer_leaves_the_update_applied(tmp_path):
    model, guard, steps, caught = _guarded_run(tmp_path, policy=Exploding())
    assert steps == 32
    assert same_tensors(model, _bare_run())
    assert [f.where for f in guard.findings if f.code == "guard_internal_error"] == ["repairer"]
    assert all(s.applied for s in guard.history)


def test_the_users_optimizer_error_propagates_unchanged():
    model, optimizer = seed003_model()

    def broken_step(closure=None):
        raise RuntimeError("user optimizer bug")

    optimizer.step = broken_step
    guard = trainguard.Guard(model, optimizer, policy="observe")
    loss = model(torch.randn(4, 20)).pow(2).mean()
    loss.backward()
    with pytest.raises(RuntimeError, match="user optimizer bug"):
        guard.step(loss)


@pytest.mark.parametrize("kwargs, error", [
    ({"policy": "no-such-policy"}, ValueError),
    ({"preset": "no-such-preset"}, ValueError),
    ({"detectors": "non_finite"}, TypeError),
])
def test_bad_arguments_get_a_one_line_error(kwargs, error):
    model, optimizer = seed003_model()
    with pytest.raises(error) as info:
        trainguard.Guard(model, optimizer, **kwargs)
    assert "\n" not in str(info.value) and str(info.value)


def test_guard_needs_a_module_and_an_optimizer():
    model, optimizer = seed003_model()
    with pytest.raises(TypeError, match="nn.Module"):
        trainguard.Guard(optimizer, model)
