"""``restore_mode`` on Keras (issue 16): a custom loop that calls ``model(x)`` without ``training=True`` leaves
BatchNormalization in inference mode (tensorflow/tensorflow#31184); under ``policy="auto"`` the guard puts it in
training mode for the calls that record gradients, as torch's ``module.train()``. Real small training on the
torch backend (the only one where a training call can be told from an evaluation call)."""
from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

import trainguard.keras as tk  # noqa: E402

pytestmark = pytest.mark.skipif(keras.backend.backend() != "torch", reason="the torch backend's custom loop")

STEPS = 150


def _data():
    """Four classes of a random linear teacher, each feature offset and scaled as raw measurements are."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2048, 12)).astype("float32")
    y = np.argmax(x @ rng.normal(size=(12, 4)), 1)
    return x * rng.uniform(2, 20, 12).astype("float32") + rng.uniform(0, 50, 12).astype("float32"), y


def _train(policy: str | None, training: bool | None = None):
    """The loop of keras.io's PyTorch custom-loop guide; ``training`` is what the step passes to the model
    (None: nothing, the bug)."""
    keras.utils.set_random_seed(0)
    x, y = _data()
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(32), keras.layers.BatchNormalization(name="bn"),
                              keras.layers.Activation("relu"), keras.layers.Dense(4)])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    if policy is not None:
        optimizer = tk.GuardedOptimizer(optimizer, policy=policy, model=model)
    rng = np.random.default_rng(1)
    losses = []
    for _ in range(STEPS):
        idx = rng.integers(0, len(x), 64)
        xb, yb = torch.from_numpy(x[idx]), torch.from_numpy(y[idx])
        loss = loss_fn(yb, model(xb) if training is None else model(xb, training=training))
        model.zero_grad()
        loss.backward()
        grads = [v.value.grad for v in model.trainable_weights]
        with torch.no_grad():
            if policy is None:
                optimizer.apply(grads, model.trainable_weights)
            else:
                optimizer.apply(grads, model.trainable_weights, loss=loss, inputs=xb, targets=yb)
        losses.append(float(loss.detach()))
    return model, optimizer, float(np.mean(losses[-15:]))


def test_auto_puts_batchnorm_in_training_mode_when_the_loop_gives_no_training_flag():
    _, _, unguarded = _train(None)
    _, _, fixed = _train(None, training=True)
    assert unguarded > 3 * fixed  # the bug is real here: 1.26 against 0.35
    with pytest.warns(UserWarning, match=r"\(bn put in training mode\); call the model with training=True"):
        model, optimizer, guarded = _train("auto")
    optimizer.close()
    restored = [a for a in optimizer.actions if a.kind == "restore_mode"]
    assert restored[0].step == 0 and restored[0].effect["applied"] is True and restored[0].effect["layers"] == ["bn"]
    assert guarded < 1.2 * fixed  # 0.36: the run trains as the fixed loop does from step 1 on
    bn = model.get_layer("bn")
    assert not np.allclose(keras.ops.convert_to_numpy(bn.moving_mean), 0.0)  # the moving statistics now train
    # An evaluation without gradients still runs in inference mode: it leaves the moving statistics as they are.
    before = keras.ops.convert_to_numpy(bn.moving_mean).copy()
    x, _ = _data()
    with torch.no_grad():
        model(torch.from_numpy(x[:64]))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(bn.moving_mean), before)


def test_an_explicit_training_false_is_left_as_the_loop_asks():
    with pytest.warns(UserWarning, match="layers in inference mode"):
        model, optimizer, _ = _train("auto", training=False)
    optimizer.close()
    restored = next(a for a in optimizer.actions if a.kind == "restore_mode")
    assert restored.effect["applied"] is False
    assert restored.effect["not_applied"] == {"bn": "the loop passed training=False: left as it asks"}
    assert np.allclose(keras.ops.convert_to_numpy(model.get_layer("bn").moving_mean), 0.0)


def test_observe_and_safe_leave_the_mode_alone():
    for policy in ("observe", "safe"):
        model, optimizer, _ = _train(policy)
        optimizer.close()
        assert np.allclose(keras.ops.convert_to_numpy(model.get_layer("bn").moving_mean), 0.0)
