"""The monitor runs each detector of the chain on its own: one that raises is switched off alone, reported once."""
from __future__ import annotations

import warnings

import pytest

from trainguard.core.detector import Detector, chain, parts
from trainguard.core.detectors import default_detectors, non_finite
from trainguard.core.findings import Severity
from trainguard.core.monitor import INTERNAL_ERROR, Monitor
from trainguard.core.stats import StepStats


def failing_at(step: int, name: str = "failing") -> Detector:
    def update(stats, seen):
        if stats.step == step:
            raise ZeroDivisionError("float division by zero\nsecond line")
        return (), seen + 1
    return Detector(name, lambda: 0, update)


def nan_at(step: int) -> StepStats:
    return StepStats(step=step, loss=float("nan"), loss_finite=False, grad_norm=1.0)


def test_a_failing_detector_is_switched_off_alone_and_reported_once():
    monitor = Monitor(chain(failing_at(2), non_finite()))
    with pytest.warns(RuntimeWarning, match="failing raised ZeroDivisionError") as caught:
        found = [monitor.observe(StepStats(step=i, loss=1.0, grad_norm=1.0)) for i in range(5)]
        later = monitor.observe(nan_at(5))
    assert len(caught) == 1
    (internal,) = found[2]
    assert (internal.code, internal.severity, internal.step) == (INTERNAL_ERROR, Severity.WARNING, 2)
    assert internal.evidence["detector"] == "failing" and internal.evidence["error"] == "ZeroDivisionError"
    assert "\n" not in internal.message and "test_monitor.py" in internal.evidence["raised_at"]
    assert [f.code for f in later] == ["non_finite"], "the other detectors keep running"
    assert monitor.disabled == ["failing"]
    assert monitor.state[0] == 2, "the failed detector's state stays where it failed"
    assert [f.code for f in monitor.findings] == [INTERNAL_ERROR, "non_finite"]


def test_nested_chains_are_flattened_so_each_detector_is_contained_alone():
    inner = chain(non_finite(), failing_at(0, "inner"))
    monitor = Monitor(chain(inner, failing_at(1, "outer")))
    assert [d.name for d in monitor.detectors] == ["non_finite", "inner", "outer"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step in range(3):
            monitor.observe(StepStats(step=step, loss=1.0))
    assert monitor.disabled == ["inner", "outer"]
    assert [f.code for f in monitor.observe(nan_at(3))] == ["non_finite"]


def test_the_default_chain_gives_the_same_findings_run_alone_or_through_the_monitor():
    stream = [StepStats(step=i, loss=1.0 + 0.01 * (i % 3), grad_norm=1.0) for i in range(60)] + [nan_at(60)]
    detector = default_detectors()
    state, expected = detector.init(), []
    for stats in stream:
        found, state = detector.update(stats, state)
        expected.extend(found)
    monitor = Monitor(detector)
    for stats in stream:
        monitor.observe(stats)
    assert monitor.findings == expected and expected
    assert [d.name for d in parts(non_finite())] == ["non_finite"]


def test_light_steps_reach_only_the_detectors_that_read_the_loss_alone_and_a_failing_one_is_switched_off_alone():
    seen = []

    def recorder(name: str, light: bool) -> Detector:
        return Detector(name, lambda: 0, lambda stats, n: (seen.append((name, stats.step)) or (), n + 1), light=light)

    monitor = Monitor(chain(recorder("gradients", False), recorder("loss", True), Detector(
        "light_failing", lambda: 0, failing_at(1).update, light=True)))
    with pytest.warns(RuntimeWarning, match="light_failing raised ZeroDivisionError"):
        found = monitor.observe_light([StepStats(step=i, loss=1.0, light=True) for i in range(3)])
    assert seen == [("loss", 0), ("loss", 1), ("loss", 2)]  # in order; never the gradients' detector
    assert [[f.code for f in step] for step in found] == [[], [INTERNAL_ERROR], []]
    assert monitor.disabled == ["light_failing"] and monitor.state[1] == 3
    monitor.observe(StepStats(step=3, loss=1.0, grad_norm=1.0))
    assert seen[-2:] == [("gradients", 3), ("loss", 3)]  # a full step reaches every detector


def test_the_default_light_detectors_are_those_that_read_the_loss_alone():
    light = [d.name for d in parts(default_detectors()) if d.light]
    assert light == ["loss_spike", "divergence", "plateau", "module_mode", "batch_size_loss", "accumulation_spill"]
