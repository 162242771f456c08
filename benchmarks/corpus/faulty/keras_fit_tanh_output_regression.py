"""y = 10x regressed by a Keras MLP with tanh in every layer, the output included: the loss stays in the thousands.

Source: Stack Overflow 77588498, "Issue in simple neural network" (https://stackoverflow.com/questions/77588498).
Symptom: data synthesized as y = 10.0 * x; Dense(16, tanh) -> Dense(8, tanh) -> Dense(4, tanh) -> Dense(1, tanh),
MSE; "a loss of ~2000 to ~200000"; ReLU tried "without any use". Accepted answer: a polynomial regression needs no
hidden layers but inputs of the polynomial's powers and a linear output: ``Dense(1)`` (activation 'linear') on
[x**0, x**1, x**2, x**3], ``Adam(0.1)``; its run falls from 891936 to ~1e3 within three epochs. The tanh output can
never leave [-1, 1] while the targets reach +-200, so it sits pinned at +-1. Fix here: the answer's model and
optimizer, on the same data.

Measured (unguarded, one thread; final_loss = training-set MSE, var(y) = 13,300): faulty 13,160 (the output unit
saturated at +-1), fixed 250 (98% of the variance explained; the unscaled x**3 feature keeps Adam(0.1) noisy).
"""
from __future__ import annotations

import numpy as np

from benchmarks.corpus.case import Case, Outcome, RunContext
from benchmarks.corpus.faulty._keras_common import fit_final_loss, keras_seeded

CASE = Case(name="keras_fit_tanh_output_regression", kind="faulty", cause="saturated_activation",
            framework="keras_fit",
            source="https://stackoverflow.com/questions/77588498 (Issue in simple neural network, y=10x, tanh MLP)",
            symptom="loss stays at ~2000-200000; the tanh output cannot reach the targets",
            fix="the answer's model: linear Dense(1) on [x**0..x**3], Adam(0.1)")

EPOCHS, DEGREE = 30, 3


def run(ctx: RunContext) -> Outcome:
    keras = keras_seeded(0)
    x = np.linspace(-20, 20, 1000, dtype=np.float32).reshape(-1, 1)
    y = 10.0 * x
    if ctx.fixed:
        inputs = np.concatenate([x ** p for p in range(DEGREE + 1)], axis=1)
        model = keras.Sequential([keras.Input((DEGREE + 1,)), keras.layers.Dense(1, activation="linear")])
        optimizer = keras.optimizers.Adam(0.1)
    else:
        inputs = x
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(16, activation="tanh"),
                                  keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(4, activation="tanh"),
                                  keras.layers.Dense(1, activation="tanh")])
        optimizer = "adam"
    model.compile(loss="mean_squared_error", optimizer=optimizer)
    model.fit(inputs, y, epochs=EPOCHS, verbose=0, callbacks=ctx.keras_callbacks())
    return ctx.outcome(final_loss=fit_final_loss(model, inputs, y), model=model, steps=EPOCHS * 32)
