"""Keras: each epoch's validation (``val_loss``, ``val_accuracy``) reaches the run log and the overfitting detector,
under ``fit`` and from a custom loop (``GuardedOptimizer.record_validation``), on every backend."""
from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import trainguard.keras as tk  # noqa: E402
from trainguard.core.findings import Severity  # noqa: E402
from trainguard.io.runlog import read_runlog  # noqa: E402


def _data(n, rng, flip):
    x = rng.normal(size=(n, 40)).astype("float32")
    y = (x @ (np.arange(1, 41) / 40) > 0).astype("float32")
    flipped = rng.random(n) < flip
    y[flipped] = 1 - y[flipped]
    return x, y[:, None]


def _fit(tmp_path, train_flip, val_flip, metrics=(), epochs=16):
    """48 training examples, 500 held out, an MLP wide enough to memorize them all."""
    rng = np.random.default_rng(0)
    (x, y), (xv, yv) = _data(48, rng, train_flip), _data(500, rng, val_flip)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((40,)), keras.layers.Dense(128, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy", metrics=list(metrics))
    guard = tk.Guard(policy="observe", log=str(tmp_path / "run.jsonl"))
    csv_log = keras.callbacks.CSVLogger(str(tmp_path / "training.csv"))
    history = model.fit(x, y, batch_size=16, epochs=epochs, validation_data=(xv, yv), verbose=0,
                        callbacks=[guard, csv_log])
    return guard, history.history, read_runlog(tmp_path / "run.jsonl")


def doctor_overfitting(tmp_path):
    from trainguard.doctor import diagnose_file

    return [f.severity for f in diagnose_file(tmp_path / "training.csv").findings if f.code == "overfitting"]


def test_fit_records_each_epochs_validation_and_finds_overfitting(tmp_path):
    # 40% of the training labels flipped: memorized, the held-out loss climbs (no metric compiled: the loss is
    # all that measures the held-out harm, as in the bag-of-words overfitting of the corpus).
    guard, history, log = _fit(tmp_path, train_flip=0.4, val_flip=0.0)
    assert [v.loss for v in log.validations] == pytest.approx(history["val_loss"], rel=1e-5)
    assert [v.step for v in log.validations[:2]] == [3, 6] and [v.epoch for v in log.validations[:2]] == [0, 1]
    assert all(v.metrics == {} and v.train_loss is not None for v in log.validations)
    overfit = [f for f in guard.findings if f.code == "overfitting"]
    assert [f.severity for f in overfit] == [Severity.WARNING]
    assert guard.diagnose()[0].code == "overfitting" and log.diagnosis[0]["code"] == "overfitting"
    assert doctor_overfitting(tmp_path) == [Severity.WARNING]  # the same definition, from the CSVLogger's log


def test_fit_whose_loss_rises_while_the_accuracy_holds_gets_information_only(tmp_path):
    # Clean training labels, 10% of the held-out ones flipped: confident predictions raise the held-out loss
    # while the held-out accuracy holds.
    guard, history, log = _fit(tmp_path, train_flip=0.0, val_flip=0.1, metrics=["accuracy"])
    assert max(history["val_loss"][-3:]) > 1.1 * min(history["val_loss"])
    assert [v.metrics["accuracy"] for v in log.validations] == pytest.approx(history["val_accuracy"], rel=1e-5)
    overfit = [f for f in guard.findings if f.code == "overfitting"]
    assert [f.severity for f in overfit] == [Severity.INFO]
    assert guard.diagnose() == [] and log.diagnosis == []
    assert doctor_overfitting(tmp_path) == [Severity.INFO]


def test_a_custom_loop_records_its_validation(tmp_path):
    from test_keras_custom_loop import make_train_step

    rng = np.random.default_rng(0)
    x, y = _data(32, rng, 0.0)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((40,)), keras.layers.Dense(1, activation="sigmoid")])
    optimizer = tk.GuardedOptimizer(keras.optimizers.SGD(0.1), policy="observe", log=str(tmp_path / "run.jsonl"))
    assert optimizer.record_validation(0.7) == ()  # before the first step: nothing to attach it to
    step = make_train_step(model, optimizer, keras.losses.BinaryCrossentropy(), training=True)
    for i in range(0, 32, 8):
        step(x[i:i + 8], y[i:i + 8])
    optimizer.record_validation(0.5, accuracy=np.float32(0.75), epoch=0)
    with pytest.raises(TypeError, match="metric 'accuracy' must be a number"):
        optimizer.record_validation(0.5, accuracy="high")
    optimizer.close()
    (record,) = read_runlog(tmp_path / "run.jsonl").validations
    assert (record.step, record.loss, record.metrics, record.epoch) == (4, 0.5, {"accuracy": 0.75}, 0)
