"""A one-neuron Keras regression of y = 2x + 1 with a sigmoid on its only (output) unit.

Source: Stack Overflow 62641394, "When do we not need activation function?"
(https://stackoverflow.com/questions/62641394). Symptom: ``Dense(units=1, input_shape=[1])`` fits y = 2x + 1 on
x = 1..7 well, but with an activation on that unit ('sigmoid', 'tanh', 'relu' tried) the predictions "become
weird". Accepted answer: sigmoid and tanh bound the output to [0, 1] / [-1, 1], so a target of 3..15 is out of
reach (the unit is pushed into its flat part); a linear regression needs no activation. Fix here: the activation
removed, nothing else.

Measured (unguarded, one thread; final_loss = training-set MSE): faulty 80.1 (the sigmoid pinned at ~1.0 for every
input), fixed 0.002.
"""
from __future__ import annotations

import numpy as np

from benchmarks.corpus.case import Case, Outcome, RunContext
from benchmarks.corpus.faulty._keras_common import fit_final_loss, keras_seeded

CASE = Case(name="keras_fit_sigmoid_output_regression", kind="faulty", cause="saturated_activation",
            framework="keras_fit",
            source="https://stackoverflow.com/questions/62641394 (When do we not need activation function?)",
            symptom="predictions stuck near 1 for targets 3..15: the output sigmoid saturates",
            fix="no activation on the output unit (accepted answer)")

EPOCHS = 400


def run(ctx: RunContext) -> Outcome:
    keras = keras_seeded(0)
    x = np.arange(1.0, 8.0, dtype=np.float32).reshape(-1, 1)
    y = 2 * x + 1
    model = keras.Sequential([keras.Input((1,)),
                              keras.layers.Dense(1, activation=None if ctx.fixed else "sigmoid")])
    model.compile(optimizer="sgd", loss="mean_squared_error")
    model.fit(x, y, epochs=EPOCHS, verbose=0, callbacks=ctx.keras_callbacks())
    return ctx.outcome(final_loss=fit_final_loss(model, x, y), model=model, steps=EPOCHS)
