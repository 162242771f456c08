"""Keras ``fit`` with ``ReduceLROnPlateau`` on the validation loss: Adam, factor 0.2, patience 3, a regression MLP.

Recipe: ``keras.callbacks.ReduceLROnPlateau`` as its documentation shows it
(https://keras.io/api/callbacks/reduce_lr_on_plateau/: ``monitor="val_loss", factor=0.2, patience=5,
min_lr=0.001`` in the example; here patience 3 and min_lr 1e-5), with ``EarlyStopping``-free training for 30
epochs, an MLP 10-64-64-1 (ReLU), Adam 3e-3, MSE, batch 32, ``validation_split=0.2`` over 2,000 standardized
rows. The LR steps down by 5x whenever the validation loss stalls; the validation loss flattens, the training loss
keeps creeping down.

Measured (unguarded, one thread, 4.4 s, 1,500 steps): training MSE 0.59 in the first epoch -> 0.066 in the last;
validation MSE 0.173 at the end (best 0.172) against 1.08 for the trivial predictor (the validation targets'
variance); the LR went 3e-3 -> 6e-4 -> 1.2e-4 -> 2.4e-5.
"""
from __future__ import annotations

import math
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded  # noqa: E402
from benchmarks.corpus.healthy._common import regression_data  # noqa: E402

CASE = Case(name="keras_fit_reduce_on_plateau", kind="healthy", cause=None, framework="keras_fit",
            source="https://keras.io/api/callbacks/reduce_lr_on_plateau/",
            symptom="none: LR divided by 5 at each validation plateau (3e-3 -> 2.4e-5)")

EPOCHS = 30


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    keras.utils.set_random_seed(0)
    x, y = regression_data(2000, 10, seed=211)
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.2, patience=3, min_lr=1e-5)
    history = model.fit(x, y, batch_size=32, epochs=EPOCHS, validation_split=0.2, verbose=0,
                        callbacks=[plateau, *ctx.keras_callbacks()])
    h = history.history
    lrs = [float(v) for v in h["learning_rate"]]
    return ctx.outcome(h["val_loss"][-1], model=model, steps=EPOCHS * math.ceil(1600 / 32),
                       trivial_loss=float(y[1600:].var()), first_epoch_loss=h["loss"][0],
                       final_loss_train=h["loss"][-1],
                       best_val_loss=min(h["val_loss"]), lr_values=sorted(set(lrs), reverse=True))
