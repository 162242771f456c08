"""Keras ``fit`` with ``EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True)``: training stops
by itself once the validation loss has not improved for 5 epochs, and the best weights come back.

Recipe: ``keras.callbacks.EarlyStopping`` (https://keras.io/api/callbacks/early_stopping/) as the Keras guide
"Training & evaluation with the built-in methods" (https://keras.io/guides/training_with_built_in_methods/) uses it:
``validation_split=0.2``, a generous ``epochs`` that the callback cuts short. Here: an MLP 16-128-128-6 (ReLU,
Dropout 0.2, softmax) on 6-class blobs with 15% label noise, Adam 1e-3, batch 32, at most 60 epochs. With noisy
labels the validation loss bottoms out after a few epochs while the training loss keeps falling: the textbook case
for early stopping.

Measured (unguarded, one thread, ~5 s CPU): 14 of the 60 epochs run (best val_loss at the 9th, patience 5);
training loss per epoch 1.31, 0.92, 0.84, ... 0.68, still falling; validation loss 0.94, 0.85, 0.80, 0.79, 0.774,
then 0.770 at its best and 0.78-0.79 after; best validation accuracy 0.83 with 15% of the labels flipped (the
trivial predictor's loss ln 6 = 1.79).
"""
from __future__ import annotations

import math
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded  # noqa: E402
from benchmarks.corpus.healthy._common import flip_labels, prior_entropy, teacher_classification  # noqa: E402

CASE = Case(name="keras_fit_early_stopping", kind="healthy", cause=None, framework="keras_fit",
            source="https://keras.io/api/callbacks/early_stopping/ (EarlyStopping on val_loss, "
                   "restore_best_weights), as in the Keras guide 'Training & evaluation with the built-in methods'",
            symptom="none: training stops early once val_loss stops improving; the training loss keeps falling")

CLASSES, MAX_EPOCHS, SAMPLES = 6, 60, 2500


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    keras.utils.set_random_seed(0)
    x, y_clean = teacher_classification(SAMPLES, 16, CLASSES, seed=421, spread=1.2)
    y = flip_labels(y_clean, 0.15, CLASSES, seed=422)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(128, activation="relu"), keras.layers.Dropout(0.2),
                              keras.layers.Dense(128, activation="relu"), keras.layers.Dropout(0.2),
                              keras.layers.Dense(CLASSES, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True)
    history = model.fit(x, y, batch_size=32, epochs=MAX_EPOCHS, validation_split=0.2, verbose=0,
                        callbacks=[stopper, *ctx.keras_callbacks()])
    h = history.history
    epochs = len(h["loss"])
    best = int(min(range(epochs), key=lambda e: h["val_loss"][e]))
    return ctx.outcome(h["val_loss"][best], model=model, steps=epochs * math.ceil(SAMPLES * 0.8 / 32),
                       epochs_run=epochs, best_epoch=best, trivial_loss=prior_entropy(y, CLASSES),
                       loss_per_epoch=[round(v, 4) for v in h["loss"]],
                       val_loss_per_epoch=[round(v, 4) for v in h["val_loss"]],
                       val_accuracy_best=h["val_accuracy"][best])
