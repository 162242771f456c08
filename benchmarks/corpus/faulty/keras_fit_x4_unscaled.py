"""y = x**4 regressed by a small Keras MLP on raw inputs in [-100, 100] and raw targets up to 1e8.

Source: Stack Overflow 52800582, "Why do I fail to predict y=x**4 with keras? (y=x**3 works)"
(https://stackoverflow.com/questions/52800582). Symptom: the network does not fit y = x**4 at all (huge loss, flat
predictions). Accepted answer: inputs and outputs are far too large for the initial weights (inputs in [-100, 100]
saturate the first sigmoid layer; targets of ~1e8 cannot be reached from unit-scale activations); scale both.
Fix here: inputs divided by 100 and targets by 1e8 (both into [-1, 1]), nothing else.

Measured (unguarded, one thread; final_loss = training-set MSE in the raw units divided by var(y), i.e. the
fraction of the variance left unexplained, so both twins are on one scale): faulty 1.55 (worse than predicting the
mean), fixed 0.041.
"""
from __future__ import annotations

import numpy as np

from benchmarks.corpus.case import Case, Outcome, RunContext
from benchmarks.corpus.faulty._keras_common import finite_or_nan, keras_seeded

CASE = Case(name="keras_fit_x4_unscaled", kind="faulty", cause="unscaled_data", framework="keras_fit",
            source="https://stackoverflow.com/questions/52800582 (Why do I fail to predict y=x**4 with keras?)",
            symptom="loss stays huge (~1e15 MSE), predictions flat: the net does not fit y=x**4",
            fix="inputs scaled by 1/100 and targets by 1/1e8 (accepted answer)")

X_SCALE, Y_SCALE, EPOCHS = 100.0, 1e8, 30


def run(ctx: RunContext) -> Outcome:
    keras = keras_seeded(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(-100, 100, size=(2000, 1)).astype(np.float32)
    y = (x ** 4).astype(np.float32)
    x_in, y_in = (x / X_SCALE, y / Y_SCALE) if ctx.fixed else (x, y)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(32, activation="sigmoid"),
                              keras.layers.Dense(32, activation="elu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    model.fit(x_in, y_in, batch_size=32, epochs=EPOCHS, verbose=0, callbacks=ctx.keras_callbacks())
    pred = model.predict(x_in, batch_size=500, verbose=0) * (Y_SCALE if ctx.fixed else 1.0)
    unexplained = finite_or_nan(np.mean((pred.astype(np.float64) - y) ** 2) / np.var(y.astype(np.float64)))
    return ctx.outcome(final_loss=unexplained, model=model, steps=EPOCHS * 63)
