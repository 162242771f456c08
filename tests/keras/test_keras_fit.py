"""The callback under ``model.fit``: everything Keras does keeps working, a healthy run is left bit-for-bit
alone, a model saved while guarded loads and trains on, and the guard's own failures never stop training."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import trainguard.keras as tk  # noqa: E402
from trainguard.core.detector import Detector  # noqa: E402
from trainguard.io.runlog import read_runlog  # noqa: E402


def data(n: int = 256):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 8)).astype("float32")
    y = (x[:, :1] + x[:, 1:2] > 0).astype("float32")
    return x, y


def build(optimizer=None, **clip):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.BatchNormalization(), keras.layers.Dropout(0.1),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-2, **clip), loss="binary_crossentropy",
                  metrics=["accuracy"])
    return model


def weights(model):
    return [keras.ops.convert_to_numpy(v) for v in model.weights]


# The user's clipping runs inside the user's optimizer, the same code on every backend: the compiled backends
# (a trace per fit) run each policy once, the torch run every combination.
ON_TORCH_ONLY = pytest.mark.skipif(keras.backend.backend() != "torch",
                                   reason="the same path as the other variants: run on the torch backend")


@pytest.mark.parametrize("clip, policy", [
    ({"clipnorm": 0.05}, "observe"), ({"global_clipnorm": 0.05}, "safe"),
    *[pytest.param(clip, policy, marks=ON_TORCH_ONLY) for clip, policy in [
        ({"clipnorm": 0.05}, "safe"), ({"clipvalue": 0.01}, "observe"), ({"clipvalue": 0.01}, "safe"),
        ({"global_clipnorm": 0.05}, "observe")]]])
def test_healthy_run_is_untouched_and_user_clipping_still_applies(clip, policy):
    x, y = data()
    bare = build(**clip)
    bare_history = bare.fit(x, y, epochs=2, batch_size=32, validation_split=0.25, verbose=0)
    model = build(**clip)
    optimizer = model.optimizer
    guard = tk.Guard(policy=policy)
    history = model.fit(x, y, epochs=2, batch_size=32, validation_split=0.25, verbose=0, callbacks=[guard])
    for a, b in zip(weights(bare), weights(model)):
        np.testing.assert_array_equal(a, b)  # the same updates: the user's clipping applied, nothing else
    assert set(history.history) == set(bare_history.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert model.optimizer is optimizer  # put back after fit
    assert guard.actions == [] and guard.findings == []
    assert len(guard.history) == 2 * 6
    # The raw gradient norm is recorded, before the user's clipping.
    assert max(s.grad_norm for s in guard.history) > 0.05
    assert all(s.eval_mode_modules in (None, ()) for s in guard.history)  # fit trains in training mode


def test_step_statistics_are_recorded(tmp_path):
    x, y = data()
    model = build()
    guard = tk.Guard(policy="safe", log=tmp_path / "run.jsonl", preset="full")
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[guard])
    log = read_runlog(tmp_path / "run.jsonl")
    first = log.steps[0]
    assert first.batch_size == 64 and first.epoch == 0 and first.lr == pytest.approx(1e-2)
    assert math.isfinite(first.loss) and first.grad_norm > 0
    assert first.inputs is not None and first.targets.abs_max == 1.0
    names = [layer.name for layer in first.layers]
    assert names == log.header["parameters"] and len(names) == len(model.trainable_weights)
    kernel = first.layers[0]
    assert kernel.update_ratio > 0 and kernel.adam_sqrt_v_median > 0
    if keras.backend.backend() != "jax":  # eager steps keep the raw gradients, TF graph steps measure them there
        assert kernel.adam_update_rms == pytest.approx(1.0, rel=1e-3)  # Adam's first step: |g| / sqrt(g^2)
        assert 0 < kernel.grad_abs_mean and 0 <= kernel.zero_grad_fraction < 1
    assert {a.kind for a in first.activations} >= {"relu", "output"}
    assert first.eval_mode_modules == ()


def test_saved_while_guarded_loads_and_trains_on(tmp_path):
    x, y = data()
    model = build()
    path = tmp_path / "ckpt.keras"
    model.fit(x, y, epochs=2, batch_size=32, verbose=0,
              callbacks=[tk.Guard(policy="auto"), keras.callbacks.ModelCheckpoint(path)])
    loaded = keras.models.load_model(path)
    assert not isinstance(loaded.optimizer, tk.GuardedOptimizer)  # the file holds the user's optimizer
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)) == 16  # with its state
    for a, b in zip(weights(model), weights(loaded)):
        np.testing.assert_allclose(a, b)
    history = loaded.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[tk.Guard(policy="auto")])
    assert math.isfinite(history.history["loss"][0])
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)) == 24


def test_compiled_with_a_guarded_optimizer_saves_and_loads(tmp_path):
    x, y = data()
    model = build(tk.GuardedOptimizer(keras.optimizers.SGD(0.05, momentum=0.9), policy="safe"))
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    if keras.backend.backend() == "torch":  # eager updates: the optimizer guards itself, no callback needed
        assert model.optimizer.findings == [] and len(model.optimizer.host.session.history) == 8
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, tk.GuardedOptimizer)
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)) == 8
    history = loaded.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert math.isfinite(history.history["loss"][0])


def test_bad_input_fails_with_one_line():
    with pytest.raises(ValueError, match="unknown policy 'bogus'"):
        tk.Guard(policy="bogus")
    with pytest.raises(TypeError, match="wraps a keras.optimizers.Optimizer"):
        tk.GuardedOptimizer("sgd")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="compiled model"):
        guard = tk.Guard()
        guard.set_model(model)
        guard.on_train_begin()


def test_a_failing_detector_is_contained():
    def update(stats, state):
        raise RuntimeError("boom")

    x, y = data()
    model = build()
    guard = tk.Guard(policy="safe", detectors=Detector("broken", lambda: None, update))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[guard])
    assert len(history.history["loss"]) == 1
    internal = [f for f in guard.findings if f.code == "guard_internal_error"]
    assert len(internal) == 1 and internal[0].where == "detectors"
    assert sum("internal error in its detectors" in str(w.message) for w in caught) == 1
    assert len(guard.history) == 8  # statistics kept flowing


def test_a_fit_interrupted_by_an_exception_is_cleaned_up_by_the_next(tmp_path):
    class Interrupt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                raise RuntimeError("interrupted")

    x, y = data()
    model = build()
    optimizer = model.optimizer
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(x, y, epochs=1, batch_size=32, verbose=0,
                  callbacks=[tk.Guard(log=tmp_path / "first.jsonl"), Interrupt()])
    assert isinstance(model.optimizer, tk.GuardedOptimizer)  # Keras skips on_train_end after an exception
    guard = tk.Guard()
    model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[guard])
    assert model.optimizer is optimizer and "train_step" not in model.__dict__
    assert len(guard.history) == 8 and guard.history[0].step == 0
    assert read_runlog(tmp_path / "first.jsonl").end["status"] == "interrupted"


def test_mixed_precision_norms_are_unscaled():
    x, y = data()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build()
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        guard = tk.Guard(policy="safe")
        history = model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[guard])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    reference = tk.Guard(policy="observe")
    build().fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[reference])
    assert math.isfinite(history.history["loss"][0])
    # The gradients reach the wrapper multiplied by the loss scale (32768); the guard records them unscaled.
    first, first_fp32 = guard.history[0].grad_norm, reference.history[0].grad_norm
    assert first == pytest.approx(first_fp32, rel=0.05)


def test_an_optimizer_it_cannot_wrap_leaves_the_run_unguarded(monkeypatch):
    x, y = data()
    model = build()
    optimizer = model.optimizer

    def broken_build(self, var_list):
        raise RuntimeError("cannot build")

    monkeypatch.setattr(tk.GuardedOptimizer, "build", broken_build)
    guard = tk.Guard(policy="safe")
    with pytest.warns(RuntimeWarning, match="could not start"):
        history = model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[guard])
    assert math.isfinite(history.history["loss"][0])
    assert model.optimizer is optimizer and "train_step" not in model.__dict__
    monkeypatch.undo()
    with pytest.raises(ValueError, match="cannot open run log"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[tk.Guard(log="/proc/no/such/dir/run.jsonl")])
    assert model.optimizer is optimizer
