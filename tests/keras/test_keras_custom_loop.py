"""Seed 000 with a custom loop: ``model(x)`` inside the training step, without ``training=True``, leaves
BatchNormalization in inference mode and Dropout off. The guarded optimizer names the layers and the fix; the
same loop with ``training=True`` raises nothing. The loop is the torch-backend one of docs/keras.md; on JAX the
same loop computes the gradients with ``jax.value_and_grad`` over ``model.stateless_call``; on TensorFlow with
``tf.GradientTape``, run eagerly and inside the user's own ``@tf.function``."""
from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
BACKEND = keras.backend.backend()

import trainguard  # noqa: E402
import trainguard.keras as tk  # noqa: E402
from trainguard.core.findings import Severity  # noqa: E402
from trainguard.io.runlog import read_runlog  # noqa: E402

# How the user's step runs: TensorFlow loops are written eagerly or as a tf.function; the others eagerly.
STYLES = ["eager", "tf.function"] if BACKEND == "tensorflow" else ["eager"]


def stopped_errors() -> tuple[type, ...]:
    """Inside a tf.function the guard's stop reaches the loop as TensorFlow's error around it."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return trainguard.TrainingStopped, tf.errors.UnknownError
    return (trainguard.TrainingStopped,)


def make_train_step(model, optimizer, loss_fn, training: bool, style: str = "eager"):
    """The user's custom training step; ``training=False`` is the seed 000 bug (``model(x)``)."""
    if BACKEND == "torch":
        import torch

        def step(xb, yb):
            xb, yb = torch.tensor(xb), torch.tensor(yb)
            y_pred = model(xb, training=True) if training else model(xb)
            loss = loss_fn(yb, y_pred)
            model.zero_grad()
            loss.backward()
            grads = [v.value.grad for v in model.trainable_weights]
            with torch.no_grad():
                optimizer.apply(grads, model.trainable_weights, loss=loss, inputs=xb, targets=yb)

        return step
    if BACKEND == "tensorflow":
        import tensorflow as tf

        def step(xb, yb):
            with tf.GradientTape() as tape:
                y_pred = model(xb, training=True) if training else model(xb)
                loss = loss_fn(yb, y_pred)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables), loss=loss, inputs=xb, targets=yb)

        return tf.function(step) if style == "tf.function" else step
    import jax

    def step(xb, yb):
        def compute_loss(trainable, non_trainable):
            y_pred, non_trainable = model.stateless_call(trainable, non_trainable, xb, training=training)
            return loss_fn(yb, y_pred), non_trainable

        (loss, non_trainable), grads = jax.value_and_grad(compute_loss, has_aux=True)(
            [v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])
        for variable, value in zip(model.non_trainable_variables, non_trainable):
            variable.assign(value)
        optimizer.apply(grads, model.trainable_variables, loss=loss, inputs=xb, targets=yb)

    return step


def run_loop(training: bool, steps: int = 30, log=None, style: str = "eager"):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 16)).astype("float32")
    y = keras.utils.to_categorical(np.argmax(x @ rng.normal(size=(16, 4)), 1), 4).astype("float32")
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32), keras.layers.BatchNormalization(name="bn"),
                              keras.layers.Activation("relu"), keras.layers.Dropout(0.2, name="drop"),
                              keras.layers.Dense(4, activation="softmax")])
    loss_fn = keras.losses.CategoricalCrossentropy()
    optimizer = tk.GuardedOptimizer(keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True), policy="safe",
                                    log=log, model=model)
    step = make_train_step(model, optimizer, loss_fn, training, style)
    with optimizer:
        for _ in range(steps):
            idx = rng.integers(0, len(x), 64)
            step(x[idx], y[idx])
    return model, optimizer


@pytest.mark.parametrize("style", STYLES)
def test_missing_training_flag_names_the_layers_and_the_fix(tmp_path, style):
    model, optimizer = run_loop(training=False, log=tmp_path / "loop.jsonl", style=style)
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


@pytest.mark.parametrize("style", STYLES)
def test_training_true_raises_nothing(style):
    model, optimizer = run_loop(training=True, style=style)
    # (data_scale may note, at INFO, that the one-hot targets are not standardized)
    assert [f for f in optimizer.findings if f.severity >= Severity.WARNING] == []
    assert "eval_mode_modules" not in [f.code for f in optimizer.findings]
    assert "bn_inference_mode" not in [c.code for c in optimizer.diagnose()]
    assert not np.allclose(keras.ops.convert_to_numpy(model.get_layer("bn").moving_mean), 0.0)


@pytest.mark.parametrize("style", STYLES)
def test_non_finite_steps_are_skipped_then_training_stops(tmp_path, style):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    optimizer = tk.GuardedOptimizer(keras.optimizers.SGD(0.1), policy="safe", log=tmp_path / "nan.jsonl")
    x, y = np.ones((8, 2), "float32"), np.full((8, 1), np.nan, "float32")
    step = make_train_step(model, optimizer, keras.losses.MeanSquaredError(), True, style)
    with pytest.raises(stopped_errors(), match="non-finite steps in a row"):
        for _ in range(25):
            step(x, y)
    assert optimizer.actions[-1].step == 19  # "safe" gives up after 20 non-finite steps in a row
    assert all(np.isfinite(keras.ops.convert_to_numpy(v)).all() for v in model.trainable_weights)  # all skipped
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == 0  # optimizer state untouched
    assert [a.kind for a in optimizer.actions] == ["skip_step"] * 20 + ["stop"]
    log = read_runlog(tmp_path / "nan.jsonl")
    assert log.end["status"] == "stopped" and len(log.steps) == 20


def test_apply_gradients_matches_the_plain_optimizer():
    def make():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])

    plain_model, guarded_model = make(), make()
    plain = keras.optimizers.SGD(0.1, momentum=0.9)
    guarded = tk.GuardedOptimizer(keras.optimizers.SGD(0.1, momentum=0.9), policy="safe")
    for step in range(3):
        grads = [keras.ops.ones(v.shape) * (step + 1) for v in plain_model.trainable_variables]
        plain.apply_gradients(zip(grads, plain_model.trainable_variables))
        guarded.apply_gradients(zip(grads, guarded_model.trainable_variables), loss=float(step))
    for a, b in zip(plain_model.trainable_variables, guarded_model.trainable_variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    history = guarded.host.session.history
    assert [s.loss for s in history] == [0.0, 1.0, 2.0]
    assert history[2].grad_norm == pytest.approx(3 * np.sqrt(3 * 2 + 2))
    guarded.close()


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("epsilon, found", [(1e-7, True), (1.0, False)], ids=["eps1e-7", "eps1"])
def test_seed002_adam_update_outgrowing_its_second_moments_is_found(style, epsilon, found):
    """Seed 002's mechanism on a fixed gradient stream: gradients of 1, then 1e-4 for 200 updates (Adam's v
    shrinks), then 1 again: the update g / max(sqrt(v_hat), eps) is ~9x its steady size while the gradient is
    no larger than at the start. A larger epsilon (the seed's fix) bounds it: nothing is found then."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    optimizer = tk.GuardedOptimizer(keras.optimizers.Adam(1e-3, beta_2=0.99, epsilon=epsilon), policy="observe")
    variables = model.trainable_variables

    def step(scale):
        grads = [keras.ops.ones(v.shape) * scale for v in variables]
        optimizer.apply_gradients(zip(grads, variables), loss=keras.ops.convert_to_tensor(1.0))

    if style == "tf.function":
        import tensorflow as tf

        step = tf.function(step)
    for i in range(201):
        step(np.float32(1.0 if i in (0, 200) else 1e-4))
    adam = [f for f in optimizer.findings if f.code == "adam_update_rms"]
    assert bool(adam) == found, optimizer.findings
    if found:
        assert adam[0].step == 200 and adam[0].evidence["adam_update_rms"] > 5
    optimizer.close()


@pytest.mark.skipif(BACKEND != "tensorflow", reason="a tf.GradientTape loop")
@pytest.mark.parametrize("style", STYLES)
def test_mixed_precision_loop_records_unscaled_norms(style):
    """mixed_float16 with a LossScaleOptimizer in the user's GradientTape loop: the gradients reach the guard
    multiplied by the loss scale (32768); it records them unscaled, as in the float32 loop."""
    import tensorflow as tf

    def first_norms(mixed: bool) -> list[float]:
        keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
        try:
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                                      keras.layers.Dense(1, dtype="float32")])
            inner = keras.optimizers.SGD(0.01)
            optimizer = tk.GuardedOptimizer(keras.optimizers.LossScaleOptimizer(inner) if mixed else inner,
                                            policy="safe")
            x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
            y = x[:, :1] * 2

            def step(xb, yb):
                with tf.GradientTape() as tape:
                    loss = keras.losses.MeanSquaredError()(yb, model(xb, training=True))
                    scaled = optimizer.scale_loss(loss)
                grads = tape.gradient(scaled, model.trainable_variables)
                optimizer.apply_gradients(zip(grads, model.trainable_variables), loss=loss)

            step = tf.function(step) if style == "tf.function" else step
            for _ in range(3):
                step(x, y)
            history = optimizer.host.session.history
            assert "guard_internal_error" not in [f.code for f in optimizer.findings]
            assert all(s.applied for s in history)
            return [s.grad_norm for s in history]
        finally:
            keras.mixed_precision.set_global_policy("float32")

    mixed, reference = first_norms(True), first_norms(False)
    assert mixed == pytest.approx(reference, rel=0.05)


@pytest.mark.parametrize("style", STYLES)
def test_a_recurrent_relu_layer_is_probed_without_an_internal_error(tmp_path, style):
    """The activation probe wraps each layer's call; a recurrent layer's inner call can hand back its output with
    its states (a list on the torch backend), which the probe read as one tensor and switched itself off."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 12, 3)).astype("float32")
    y = x.sum(axis=(1, 2))[:, None].astype("float32") / 6.0
    model = keras.Sequential([keras.Input((12, 3)), keras.layers.SimpleRNN(16, activation="relu", name="rnn"),
                              keras.layers.Dense(1)])
    optimizer = tk.GuardedOptimizer(keras.optimizers.SGD(0.01), policy="observe", log=tmp_path / "run.jsonl",
                                    model=model, preset="full")
    step = make_train_step(model, optimizer, keras.losses.MeanSquaredError(), True, style)
    with optimizer:
        for _ in range(4):
            idx = rng.integers(0, len(x), 32)
            step(x[idx], y[idx])
    assert not [f for f in optimizer.findings if f.code == "guard_internal_error"]
    if BACKEND != "jax":  # JAX's loop differentiates a stateless_call: its layers' outputs are tracers, not read
        probed = {a.name for s in read_runlog(tmp_path / "run.jsonl").steps for a in s.activations or ()}
        assert "rnn" in probed, probed
