"""The overfitting detector on validation streams, the validation record and its place in the run log."""
from __future__ import annotations

import math

import pytest

from trainguard.core.detector import replay
from trainguard.core.detectors.overfitting import metric_direction, overfitting
from trainguard.core.findings import Severity
from trainguard.core.session import Session
from trainguard.core.stats import StepStats
from trainguard.core.validation import Validation, training_level, validation_record
from trainguard.io.runlog import RunLogWriter, read_runlog

# Validation loss falls to its best at evaluation 4, then climbs 5% an evaluation; the training loss keeps falling.
VAL = [1.0, 0.8, 0.7, 0.65, 0.6, 0.63, 0.66, 0.69, 0.72, 0.76]
TRAIN = [1.2 * 0.85 ** i for i in range(len(VAL))]


def stream(val=VAL, train=TRAIN, **metrics):
    return [Validation(step=50 * i, loss=v, train_loss=t, metrics={k: m[i] for k, m in metrics.items()})
            for i, (v, t) in enumerate(zip(val, train))]


def severities(found):
    return [(f.step, f.severity) for f in found]


def test_a_sustained_rise_while_training_falls_is_a_warning_without_metrics():
    found, _ = replay(overfitting(), stream())
    # GL passes 10% at evaluation 6 (0.66 / 0.6), but the third evaluation after the best is the 7th (0.69):
    # reported there, once.
    assert severities(found) == [(350, Severity.WARNING)]
    evidence = found[0].evidence
    assert evidence["best_step"] == 200 and evidence["best_val_loss"] == 0.6
    assert evidence["val_rise"] == pytest.approx(0.15) and evidence["train_loss_now"] < evidence["train_loss_at_best"]


def test_the_loss_rises_but_the_accuracy_holds_is_information_only():
    accuracy = [0.6, 0.8, 0.9, 0.92, 0.93, 0.935, 0.93, 0.932, 0.93, 0.931]
    found, _ = replay(overfitting(), stream(accuracy=accuracy))
    assert severities(found) == [(350, Severity.INFO)]
    assert found[0].evidence["metrics_held"] == ["accuracy"]


def test_an_accuracy_that_degrades_later_escalates_to_a_warning_once():
    accuracy = [0.6, 0.8, 0.9, 0.92, 0.93, 0.93, 0.92, 0.9, 0.88, 0.86]
    found, _ = replay(overfitting(), stream(accuracy=accuracy))
    # Median of the last three at evaluation 8: 0.90, 3% under 0.93 (more than the 2% margin).
    assert severities(found) == [(350, Severity.INFO), (400, Severity.WARNING)]


def test_a_lower_is_better_metric_and_every_metric_must_degrade():
    mae = [1.0, 0.8, 0.7, 0.65, 0.6, 0.62, 0.64, 0.66, 0.7, 0.74]
    found, _ = replay(overfitting(), stream(mean_absolute_error=mae))
    assert severities(found) == [(350, Severity.WARNING)]
    accuracy = [0.93] * len(VAL)
    found, _ = replay(overfitting(), stream(mean_absolute_error=mae, accuracy=accuracy))
    assert severities(found) == [(350, Severity.INFO)]
    # A metric whose direction the name does not tell is not weighed.
    found, _ = replay(overfitting(), stream(samples_per_second=[100.0] * len(VAL)))
    assert severities(found) == [(350, Severity.WARNING)]


@pytest.mark.parametrize("case", ["training_rises", "wobble", "one_outlier", "too_few", "new_best"])
def test_no_finding(case):
    val, train = list(VAL), list(TRAIN)
    if case == "training_rises":  # both rise: the run diverges, it does not overfit
        train = TRAIN[:5] + [TRAIN[4] * 1.1 ** i for i in range(1, 6)]
    elif case == "wobble":  # within 10% of the best, up and down
        val = VAL[:5] + [0.62, 0.6, 0.64, 0.61, 0.63]
    elif case == "one_outlier":  # the last evaluation far up, the three before near the best
        val = VAL[:5] + [0.6, 0.6, 0.61, 0.6, 0.9]
    elif case == "too_few":  # best at the second evaluation, only 4 evaluations
        val, train = [1.0, 0.6, 0.7, 0.8], TRAIN[:4]
    elif case == "new_best":  # a climb that turns back below the best
        val = VAL[:5] + [0.63, 0.62, 0.58, 0.56, 0.55]
    found, _ = replay(overfitting(), stream(val, train))
    assert found == []


def test_a_new_best_rearms_the_detector():
    val = VAL + [0.5, 0.55, 0.6, 0.65, 0.7]
    train = [1.2 * 0.85 ** i for i in range(len(val))]
    found, _ = replay(overfitting(), stream(val, train))
    assert [f.severity for f in found] == [Severity.WARNING, Severity.WARNING]
    assert found[1].evidence["best_val_loss"] == 0.5


def test_non_finite_and_missing_losses_are_skipped():
    records = stream()
    records.insert(6, Validation(step=301, loss=math.nan, train_loss=0.3))
    records.insert(6, Validation(step=302, metrics={"accuracy": 0.5}))
    found, _ = replay(overfitting(), records)
    assert severities(found) == [(350, Severity.WARNING)]


def test_metric_direction_by_name():
    assert [metric_direction(n) for n in ("accuracy", "sparse_categorical_accuracy", "acc", "f1", "auc", "val/iou",
                                          "mean_absolute_error", "mse", "perplexity", "top_k_error", "runtime",
                                          "samples_per_second")] == \
        [True, True, True, True, True, True, False, False, False, False, None, None]


def test_validation_record_takes_numbers_and_refuses_the_rest():
    record = validation_record(7, 0.5, {"accuracy": 1}, epoch=2)
    assert record == Validation(7, 0.5, {"accuracy": 1.0}, epoch=2)
    assert Validation.from_dict(record.to_dict()) == record
    with pytest.raises(TypeError, match="validation loss must be a number"):
        validation_record(7, "0.5")
    with pytest.raises(TypeError, match="metric 'accuracy'"):
        validation_record(7, 0.5, {"accuracy": [0.1, 0.2]})
    with pytest.raises(TypeError, match="needs a loss or at least one metric"):
        validation_record(7)


def test_the_session_fills_the_training_level_logs_the_record_and_finds_overfitting(tmp_path):
    path = tmp_path / "run.jsonl"
    session = Session(log=RunLogWriter(path), detectors=None)
    found = []
    for i, val in enumerate(VAL):
        for step in range(50 * i, 50 * (i + 1)):
            session.observe(StepStats(step=step, loss=1.2 * 0.85 ** (step / 50)))
        found += session.validate(Validation(step=50 * (i + 1), loss=val, metrics={"accuracy": 0.9}))
    session.close()
    assert severities(found) == [(400, Severity.INFO)]
    assert session.validations[-1].train_loss == pytest.approx(training_level(session.history))
    log = read_runlog(path)
    assert [v.loss for v in log.validations] == VAL and log.validations[0].metrics == {"accuracy": 0.9}
    assert [f.code for f in log.findings] == ["overfitting"]
    assert log.validations[0].train_loss == pytest.approx(training_level(
        [StepStats(step=s, loss=1.2 * 0.85 ** (s / 50)) for s in range(50)]))
