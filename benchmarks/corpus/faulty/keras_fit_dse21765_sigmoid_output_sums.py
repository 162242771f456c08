"""A one-neuron sigmoid network taught to add its three inputs: it answers 1 whatever the sum.

Source: Data Science Stack Exchange 21765, "Shallow Neural Net for predicting numbers other then 1 or 0?"
(https://datascience.stackexchange.com/questions/21765). Symptom: a single sigmoid neuron (Siraj Raval's
"neural network in 11 lines", full-batch gradient descent on MSE) that learned 0/1 patterns is given patterns whose
target is the sum of the inputs ([2, 2, 2] -> 6, [1, 2, 0] -> 3, [1, 1, 2] -> 4) and answers "1." for [2, 2, 0];
the asker suspected the sigmoid forcing the output between 0 and 1. Accepted answer: the code solves a
classification problem and this is a regression: the neuron must output an arbitrary number, so no sigmoid on it.
Cause: ``saturated_activation`` (the output sigmoid cannot reach targets up to 6; LeCun et al. 1998, "Efficient
BackProp", sec. 4.5). Fix here: the activation removed from the neuron (a linear output), nothing else.

Here: Keras ``Dense(1, activation="sigmoid")`` on the 27 patterns of {0, 1, 2}^3 ("more training included if
necessary"), targets their sums (0..6), MSE, SGD 0.05, full batch, 400 epochs. final_loss: training-set MSE.
Measured (unguarded, one thread): faulty 6.0 (the neuron at ~1 for every sum: var 2 + (3 - 1)^2), fixed 7e-7
(weights 1, 1, 1).
"""
from __future__ import annotations

import itertools

import numpy as np

from benchmarks.corpus.case import Case, Outcome, RunContext
from benchmarks.corpus.faulty._keras_common import fit_final_loss, keras_seeded

CASE = Case(name="keras_fit_dse21765_sigmoid_output_sums", kind="faulty", cause="saturated_activation",
            framework="keras_fit",
            source="https://datascience.stackexchange.com/questions/21765 (Shallow Neural Net for predicting numbers "
                   "other then 1 or 0?)",
            symptom="a sigmoid neuron taught to output the sum of its inputs answers 1",
            fix="no sigmoid on the output neuron: a linear output for a regression (accepted answer)")

EPOCHS = 400


def run(ctx: RunContext) -> Outcome:
    keras = keras_seeded(0)
    x = np.array(list(itertools.product([0.0, 1.0, 2.0], repeat=3)), dtype=np.float32)
    y = x.sum(axis=1, keepdims=True)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation=None if ctx.fixed else "sigmoid")])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mean_squared_error")
    model.fit(x, y, epochs=EPOCHS, batch_size=len(x), verbose=0, callbacks=ctx.keras_callbacks())
    return ctx.outcome(final_loss=fit_final_loss(model, x, y), model=model, steps=EPOCHS,
                       trivial_loss=float(np.var(y)))
