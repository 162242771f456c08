"""The doctor reads what a real TensorFlow run writes: ``tf.summary`` event files, the Keras ``TensorBoard``
callback's event files and Keras ``CSVLogger`` files, all generated here from seed 003's diverging run."""
from __future__ import annotations

import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")
if keras.backend.backend() != "tensorflow":
    pytest.skip("the logs of a TensorFlow run (KERAS_BACKEND=tensorflow)", allow_module_level=True)

import tensorflow as tf  # noqa: E402

from trainguard.doctor.diagnose import diagnose_run  # noqa: E402
from trainguard.doctor.readers import find_logs, read_run  # noqa: E402

from _keras_seeds import seed003  # noqa: E402


def test_tf_summary_scalars_are_read_step_by_step(tmp_path):
    losses = [2.0 / (1 + i) for i in range(40)] + [math.nan]
    with tf.summary.create_file_writer(str(tmp_path)).as_default():
        for step, loss in enumerate(losses):
            tf.summary.scalar("loss", loss, step=step)
            tf.summary.scalar("learning_rate", 1e-3, step=step)
    (path,) = find_logs([tmp_path])
    series = read_run(path)
    assert series.format == "tensorboard" and list(series.step) == list(range(len(losses)))
    np.testing.assert_allclose(series.loss[:-1], losses[:-1], rtol=1e-6)
    assert math.isnan(series.loss[-1]) and series.lr is not None


def test_keras_tensorboard_and_csvlogger_files_of_a_diverging_run(tmp_path):
    callbacks = [keras.callbacks.TensorBoard(str(tmp_path / "tb"), update_freq="batch"),
                 keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))]
    epoch_losses = seed003(None, epochs=3, callbacks=callbacks)
    assert not math.isfinite(epoch_losses[-1])  # seed 003 goes NaN in its third epoch

    csv = read_run(tmp_path / "log.csv")
    assert csv.format == "csv" and len(csv) == 3
    np.testing.assert_allclose(csv.loss[:2], epoch_losses[:2], rtol=1e-6)
    assert not math.isfinite(csv.loss[-1])

    event_files = find_logs([tmp_path / "tb"])
    train = next(read_run(p) for p in event_files if "train" in p.parts)
    assert train.format == "tensorboard" and len(train) >= 3 * 16  # one row per batch (update_freq="batch")
    assert not np.all(np.isfinite(train.loss))
    findings, _ = diagnose_run(train)
    assert "non_finite" in {f.code for f in findings}
