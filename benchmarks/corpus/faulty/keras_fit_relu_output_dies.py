"""y = 2x - 1 fitted by a tiny Keras MLP whose output unit is a ReLU; most runs never move.

Source: DeepLearning.AI community, "Loss values do not change" (https://community.deeplearning.ai/t/
loss-values-do-not-change/324182). Symptom: Dense(4, relu) -> Dense(2, relu) -> Dense(1, relu), Adam(0.001), MSE,
500 epochs on the seven points of y = 2x - 1; "most of the time" (6 or 7 runs in 10) the loss sticks at one value
from the first epoch, whatever the layer sizes, epochs or learning rate. Cause and fix: a ReLU output unit whose
pre-activation is negative on every input outputs 0 and passes back no gradient (a dead ReLU; the targets even
include negative values it can never produce); the accepted answer to the same question on Stack Overflow
(https://stackoverflow.com/questions/62641394, a single-unit ReLU regression: "if your neuron's weight is
initialized with a negative number, you will always get zero as an output") is to leave the regression output
linear. Fix here: no activation on the output layer, nothing else. The seed is one of the runs that stick.

Measured (unguarded, one thread; final_loss = training-set MSE, var(y) = 16): faulty 25.0 (the output stuck at 0 from
epoch 1: mean(y**2) = 25), fixed 1.77 (still falling at epoch 500 with Adam(0.001)).
"""
from __future__ import annotations

import numpy as np

from benchmarks.corpus.case import Case, Outcome, RunContext
from benchmarks.corpus.faulty._keras_common import fit_final_loss, keras_seeded

CASE = Case(name="keras_fit_relu_output_dies", kind="faulty", cause="dead_relu", framework="keras_fit",
            source="https://community.deeplearning.ai/t/loss-values-do-not-change/324182 (ReLU output unit)",
            symptom="loss stuck at one value from the first epoch in most runs",
            fix="linear output layer instead of ReLU (SO 62641394's accepted answer for a ReLU regression output)")

EPOCHS, SEED = 500, 6


def run(ctx: RunContext) -> Outcome:
    keras = keras_seeded(SEED)
    x = np.array([-1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0], dtype=np.float32).reshape(7, 1)
    y = 2 * x - 1
    inputs = keras.Input(shape=(1,))
    hidden = keras.layers.Dense(4, activation="relu")(inputs)
    hidden = keras.layers.Dense(2, activation="relu")(hidden)
    outputs = keras.layers.Dense(1, activation=None if ctx.fixed else "relu")(hidden)
    model = keras.Model(inputs=inputs, outputs=outputs)
    model.compile(loss=keras.losses.MeanSquaredError(), optimizer=keras.optimizers.Adam(0.001))
    model.fit(x, y, epochs=EPOCHS, verbose=0, callbacks=ctx.keras_callbacks())
    return ctx.outcome(final_loss=fit_final_loss(model, x, y), model=model, steps=EPOCHS)
