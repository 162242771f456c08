"""A dead ReLU output unit on Keras (the DeepLearning.AI 'loss values do not change' thread: Dense(4, relu) ->
Dense(2, relu) -> Dense(1, relu) fitting y = 2x - 1, stuck from epoch 1): ReDo draws it non-negative, so it fires."""
from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import trainguard.keras as tk  # noqa: E402
from trainguard.adapters.keras.effector import recycle_dead_layer  # noqa: E402

X = np.array([-1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0], dtype=np.float32).reshape(7, 1)
Y = 2 * X - 1


def _dead_output_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(2, activation="relu"), keras.layers.Dense(1, activation="relu")])
    out = model.layers[-1]
    out.kernel.assign(-np.abs(keras.ops.convert_to_numpy(out.kernel)) - 0.1)
    out.bias.assign(np.full((1,), -0.5, dtype="float32"))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    return model


def test_a_recycled_keras_output_layer_is_drawn_non_negative():
    model = _dead_output_model()
    model.fit(X, Y, epochs=1, verbose=0)
    out = model.layers[-1]
    done = recycle_dead_layer(model, model.optimizer, (out.name,), {out.name: 1.0}, seed=3)
    assert done == {"units": 1, "layers": [out.name]}
    kernel = keras.ops.convert_to_numpy(out.kernel)
    assert np.all(kernel >= 0) and np.any(kernel > 0) and np.all(keras.ops.convert_to_numpy(out.bias) >= 0)


def test_a_dead_keras_output_relu_is_revived_under_auto():
    def fit(policy):
        model = _dead_output_model()
        guard = tk.Guard(policy=policy)
        model.fit(X, Y, epochs=300, verbose=0, callbacks=[guard])
        return float(model.evaluate(X, Y, verbose=0)), guard

    dead, _ = fit("observe")
    revived, guard = fit("auto")
    assert next(a for a in guard.actions if a.kind == "recycle_dormant").effect["units"] == 1
    assert dead == pytest.approx(float(np.mean(Y ** 2))) and revived < 0.25 * dead
