"""``detectors.output_range``: targets outside the range of the model's output sigmoid/tanh are a WARNING at the
second sampled step that knows both; targets inside it (0/1 labels, label smoothing, [0, 1] pixels, [-1, 1]
actions), an output with no bounded non-linearity, and a run without targets stay quiet."""
from __future__ import annotations

import pytest

from trainguard.core.detector import replay
from trainguard.core.detectors import default_detectors
from trainguard.core.detectors.output_range import output_range
from trainguard.core.findings import Severity
from trainguard.core.stats import ActivationStats, StepStats, TensorSummary


def _acts(kind: str) -> tuple[ActivationStats, ...]:
    """A hidden ReLU, then the output non-linearity ``kind`` whose output is the model's (the same std)."""
    return (ActivationStats("0", "relu", dead_fraction=0.2, output_std=1.3),
            ActivationStats("3", kind, saturated_fraction=0.9, output_std=0.02),
            ActivationStats("(output)", "output", output_std=0.02))


def _run(kind: str, targets: TensorSummary | None, steps: int = 100, every: int = 25) -> list[StepStats]:
    """The adapters' pattern: the targets summarized on the first 3 steps, activations sampled every ``every``."""
    return [StepStats(step=s, loss=1.0, grad_norm=1.0, targets=targets if s < 3 else None,
                      activations=_acts(kind) if s % every == 0 else ())
            for s in range(steps)]


def _found(stats):
    return replay(output_range(), stats)[0]


@pytest.mark.parametrize("kind, targets, outside", [
    ("sigmoid", TensorSummary(9.0, 4.0, 15.0), 14.0),   # y = 2x + 1 on x = 1..7 (Stack Overflow 62641394)
    ("tanh", TensorSummary(0.0, 115.0, 200.0), 199.0),  # y = 10x on [-20, 20] (Stack Overflow 77588498)
    ("sigmoid", TensorSummary(-0.6, 0.3, 1.0), 0.6),     # |max| inside, but the mean below 0: an MSE floor of 0.36
])
def test_targets_outside_the_bounded_output_are_a_warning_at_the_second_sample(kind, targets, outside):
    found = _found(_run(kind, targets))
    assert [(f.code, f.severity, f.step, f.where) for f in found] == [
        ("output_out_of_range", Severity.WARNING, 25, "3")]
    evidence = found[0].evidence
    assert evidence["activation"] == kind and evidence["outside"] == pytest.approx(outside)
    assert evidence["targets_mean"] == targets.mean and evidence["targets_abs_max"] == targets.abs_max


def test_the_default_detectors_raise_it():
    codes = [f.code for f in replay(default_detectors(), _run("sigmoid", TensorSummary(9.0, 4.0, 15.0)))[0]]
    assert "output_out_of_range" in codes


@pytest.mark.parametrize("why, kind, targets", [
    ("0/1 labels of a binary classifier (BCE)", "sigmoid", TensorSummary(0.5, 0.5, 1.0)),
    ("label smoothing 0.1", "sigmoid", TensorSummary(0.5, 0.45, 0.95)),
    ("[0, 1] pixels of an autoencoder", "sigmoid", TensorSummary(0.55, 0.23, 0.998)),
    ("[-1, 1] actions under a tanh", "tanh", TensorSummary(0.1, 0.6, 1.0)),
    ("standardized targets past the bound by less than the margin", "tanh", TensorSummary(0.0, 0.5, 1.4)),
    ("large targets under a linear output (unscaled_data's case)", "linear", TensorSummary(9.0, 4.0, 15.0)),
    ("large targets under a ReLU output", "relu", TensorSummary(9.0, 4.0, 15.0)),
    ("no targets passed to the guard", "sigmoid", None),
])
def test_quiet(why, kind, targets):
    assert _found(_run(kind, targets)) == [], why


def test_one_sample_is_not_enough_and_the_widest_targets_seen_count():
    narrow, wide = TensorSummary(0.5, 0.3, 1.0), TensorSummary(0.6, 0.5, 3.0)
    stats = [StepStats(step=s, loss=1.0, targets={0: narrow, 1: wide}.get(s),
                       activations=_acts("sigmoid") if s in (0, 30, 60) else ()) for s in range(61)]
    assert _found(stats[:60]) == []  # one sample after the wide targets
    found = _found(stats)
    assert [f.step for f in found] == [60] and found[0].evidence["targets_abs_max"] == 3.0


def test_a_last_activation_that_feeds_another_layer_is_no_bounded_output():
    acts = (ActivationStats("1", "sigmoid", saturated_fraction=0.9, output_std=0.02),
            ActivationStats("(output)", "output", output_std=4.0))  # a linear layer after the sigmoid
    stats = [StepStats(step=s, loss=1.0, targets=TensorSummary(9.0, 4.0, 15.0), activations=acts) for s in range(5)]
    assert _found(stats) == []


def test_min_and_max_where_measured_find_targets_the_mean_and_abs_max_cannot():
    # sin targets in [-1, 1] under a sigmoid (Stack Overflow 5105718: "won't predict negative values"): the mean
    # is inside [0, 1] and |max| is 1; only the minimum shows the half of the targets out of reach.
    without = TensorSummary(0.05, 0.7, 1.0)
    measured = TensorSummary(0.05, 0.7, 1.0, min=-1.0, max=1.0)
    assert _found(_run("sigmoid", without)) == []
    found = _found(_run("sigmoid", measured))
    assert [f.code for f in found] == ["output_out_of_range"]
    assert found[0].evidence["beyond_bound"] == pytest.approx(1.0) and found[0].evidence["targets_min"] == -1.0
    assert _found(_run("tanh", measured)) == []  # the same targets are in a tanh's range


def test_min_and_max_round_trip_through_the_run_log_and_older_logs_have_none():
    stats = StepStats(step=0, targets=TensorSummary(0.5, 0.2, 1.5, min=-1.5, max=0.9))
    assert StepStats.from_dict(stats.to_dict()).targets == stats.targets
    old = StepStats.from_dict({"step": 0, "targets": {"mean": 0.5, "std": 0.2, "abs_max": 1.5}})
    assert (old.targets.min, old.targets.max) == (None, None)
