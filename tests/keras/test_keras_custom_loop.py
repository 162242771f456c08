"""Seed 000 with a custom loop: ``model(x)`` inside the training step, without ``training=True``, leaves
BatchNormalization in inference mode and Dropout off. The guarded optimizer names the layers and the fix; the
same loop with ``training=True`` raises nothing. (The loop is written for the torch backend, as in docs/keras.md.)"""
from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":
    pytest.skip("the custom loop here is the torch-backend one from docs/keras.md", allow_module_level=True)

import torch  # noqa: E402

import trainguard  # noqa: E402
import trainguard.keras as tk  # noqa: E402
from trainguard.core.findings import Severity  # noqa: E402
from trainguard.io.runlog import read_runlog  # noqa: E402


def run_loop(training: bool, steps: int = 30, log=None):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 16)).astype("float32")
    y = keras.utils.to_categorical(np.argmax(x @ rng.normal(size=(16, 4)), 1), 4)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32), keras.layers.BatchNormalization(name="bn"),
                              keras.layers.Activation("relu"), keras.layers.Dropout(0.2, name="drop"),
                              keras.layers.Dense(4, activation="softmax")])
    loss_fn = keras.losses.CategoricalCrossentropy()
    optimizer = tk.GuardedOptimizer(keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True), policy="safe",
                                    log=log, model=model)
    with optimizer:
        for _ in range(steps):
            idx = rng.integers(0, len(x), 64)
            xb, yb = torch.tensor(x[idx]), torch.tensor(y[idx])
            y_pred = model(xb, training=True) if training else model(xb)
            loss = loss_fn(yb, y_pred)
            model.zero_grad()
            loss.backward()
            grads = [v.value.grad for v in model.trainable_weights]
            with torch.no_grad():
                optimizer.apply(grads, model.trainable_weights, loss=loss, inputs=xb, targets=yb)
    return model, optimizer


def test_missing_training_flag_names_the_layers_and_the_fix(tmp_path):
    model, optimizer = run_loop(training=False, log=tmp_path / "loop.jsonl")
    first = read_runlog(tmp_path / "loop.jsonl").steps[0]
    assert first.batch_size == 64 and first.inputs is not None and first.targets.abs_max == 1.0
    found = [f for f in optimizer.findings if f.code == "eval_mode_modules"]
    assert found and found[0].step == 0  # seen on the very first step
    assert found[0].evidence["modules"] == ["bn", "drop"]
    causes = optimizer.diagnose()
    assert causes[0].code == "bn_inference_mode"
    assert "training=True" in causes[0].fix.text("keras")
    # The moving statistics never moved: the signal is real, not a guess.
    bn = model.get_layer("bn")
    assert np.allclose(keras.ops.convert_to_numpy(bn.moving_mean), 0.0)


def test_training_true_raises_nothing():
    model, optimizer = run_loop(training=True)
    # (data_scale may note, at INFO, that the one-hot targets are not standardized)
    assert [f for f in optimizer.findings if f.severity >= Severity.WARNING] == []
    assert "eval_mode_modules" not in [f.code for f in optimizer.findings]
    assert "bn_inference_mode" not in [c.code for c in optimizer.diagnose()]
    assert not np.allclose(keras.ops.convert_to_numpy(model.get_layer("bn").moving_mean), 0.0)


def test_non_finite_steps_are_skipped_then_training_stops(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    optimizer = tk.GuardedOptimizer(keras.optimizers.SGD(0.1), policy="safe", log=tmp_path / "nan.jsonl")
    x, y = torch.ones(8, 2), torch.full((8, 1), float("nan"))
    with pytest.raises(trainguard.TrainingStopped, match="non-finite steps in a row") as stopped:
        for _ in range(25):
            loss = keras.losses.MeanSquaredError()(y, model(x, training=True))
            model.zero_grad()
            loss.backward()
            grads = [v.value.grad for v in model.trainable_weights]
            with torch.no_grad():
                optimizer.apply_gradients(zip(grads, model.trainable_weights), loss=loss)
    assert stopped.value.step == 19  # "safe" gives up after 20 non-finite steps in a row
    assert all(np.isfinite(keras.ops.convert_to_numpy(v)).all() for v in model.trainable_weights)  # all skipped
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == 0  # optimizer state untouched
    assert [a.kind for a in optimizer.actions] == ["skip_step"] * 20 + ["stop"]
    log = read_runlog(tmp_path / "nan.jsonl")
    assert log.end["status"] == "stopped" and len(log.steps) == 20
