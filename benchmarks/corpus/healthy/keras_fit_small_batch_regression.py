"""Keras ``fit`` of a small tabular regression with batch 8: Dense 64-64-1, RMSprop, MSE, MAE metric.

Recipe: the Boston-housing regression of Chollet, "Deep Learning with Python" (2nd ed., section 4.3, companion
notebook https://github.com/fchollet/deep-learning-with-python-notebooks/blob/master/chapter04_getting-started-with-
neural-networks.ipynb: features standardized with the training mean/std, Dense(64, relu) x2 + Dense(1),
``optimizer="rmsprop", loss="mse", metrics=["mae"]``, small batches; the target left in its units, thousands of
dollars). Here 404 training rows of 13 features with a price-like target (mean ~22, std ~9, as Boston's), batch 8,
40 epochs (2,040 steps). The MSE starts in the hundreds (the target is not standardized) and the per-batch loss of
8 rows varies by an order of magnitude.

Measured (unguarded, one thread, 5.8 s): training MSE 410 in the first epoch (the targets' mean square is ~580)
-> 13.9 in the last; held-out MSE 20.6 against 73.4 for the trivial predictor (the held-out targets' variance),
held-out MAE 3.6 (target std 8.6).
"""
from __future__ import annotations

import math
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded  # noqa: E402
from benchmarks.corpus.healthy._common import regression_data  # noqa: E402

CASE = Case(name="keras_fit_small_batch_regression", kind="healthy", cause=None, framework="keras_fit",
            source="Chollet, Deep Learning with Python 2nd ed. 4.3 (Boston housing), "
                   "github.com/fchollet/deep-learning-with-python-notebooks chapter04",
            symptom="none: MSE starts in the hundreds (target in its units), batch-8 losses vary 10x")

EPOCHS, BATCH = 40, 8


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    keras.utils.set_random_seed(0)
    x, y_std = regression_data(506, 13, seed=241, noise=0.35)
    y = (22.5 + 9.2 * y_std).astype(np.float32)  # a price in thousands of dollars, Boston's mean and std
    x_train, y_train, x_test, y_test = x[:404], y[:404], x[404:], y[404:]
    model = keras.Sequential([keras.Input((13,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer="rmsprop", loss="mse", metrics=["mae"])
    history = model.fit(x_train, y_train, batch_size=BATCH, epochs=EPOCHS, verbose=0,
                        validation_data=(x_test, y_test), callbacks=ctx.keras_callbacks())
    h = history.history
    return ctx.outcome(h["val_loss"][-1], model=model, steps=EPOCHS * math.ceil(404 / BATCH),
                       trivial_loss=float(y_test.var()), first_epoch_loss=h["loss"][0], final_train_loss=h["loss"][-1],
                       val_mae=h["val_mae"][-1], target_std=float(y_test.std()))
