"""The seed cases as small Keras runs, shared by the tests, which run once per Keras backend (tests/keras/conftest.py).

Backend-neutral: only ``keras`` and numpy. Each function returns plain results.
"""
from __future__ import annotations

import numpy as np

import keras

import trainguard.keras as tk
from trainguard.scenarios.exploding_gradient import make_regression


def seed003(guard: tk.Guard | None, epochs: int = 30, clipnorm: float | None = None, callbacks: list = (),
            **compile_args) -> list[float]:
    """Seed 003: MLP regression on unscaled targets, SGD(0.01, momentum=0.9). Returns the epoch losses.
    ``callbacks``: more Keras callbacks; ``compile_args``: more ``model.compile`` arguments (``jit_compile``,
    ``steps_per_execution``)."""
    keras.utils.set_random_seed(0)
    x, y = make_regression()
    model = keras.Sequential([keras.Input((20,)),
                              keras.layers.Dense(25, activation="relu", kernel_initializer="he_uniform"),
                              keras.layers.Dense(1)])
    model.compile(loss="mse", optimizer=keras.optimizers.SGD(0.01, momentum=0.9, clipnorm=clipnorm), **compile_args)
    history = model.fit(x[:500], y[:500], epochs=epochs, batch_size=32, verbose=0,
                        callbacks=([guard] if guard is not None else []) + list(callbacks))
    return [float(v) for v in history.history["loss"]]


def seed001_data(high: float, seed: int = 0):
    """Seed 001: 100 points x in [0, high] with 5% noise; the model should learn y = x."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, high, 100, dtype=np.float32)
    z = x + rng.normal(0, 0.05 * high, x.shape).astype(np.float32)
    return z.reshape(-1, 1), x.reshape(-1, 1)


def seed001(experiment: int, guard: tk.Guard | None, epochs: int = 20) -> list[float]:
    """Experiment 2: x in [0, 4] unscaled, Dense(32) -> Dense(1), SGD(0.1): explodes to NaN.
    Experiment 3: x in [0, 1], four Dense(32, sigmoid) layers, SGD(0.1): vanishing gradients."""
    keras.utils.set_random_seed(0)
    if experiment == 2:
        z, y = seed001_data(4.0)
        layers = [keras.layers.Dense(32), keras.layers.Dense(1)]
    elif experiment == 3:
        z, y = seed001_data(1.0)
        layers = [keras.layers.Dense(32, activation="sigmoid") for _ in range(4)] + [keras.layers.Dense(1)]
    else:
        raise ValueError(f"seed 001 has no experiment {experiment} here")
    model = keras.Sequential([keras.Input((1,)), *layers])
    model.compile(loss="mean_squared_error", optimizer=keras.optimizers.SGD(learning_rate=0.1))
    history = model.fit(z, y, epochs=epochs, batch_size=20, shuffle=True, verbose=0,
                        callbacks=[guard] if guard is not None else [])
    return [float(v) for v in history.history["loss"]]
