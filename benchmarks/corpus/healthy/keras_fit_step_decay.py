"""Keras ``fit`` with step LR decay through ``LearningRateScheduler``: SGD lr 0.1 halved every 5 epochs.

Recipe: ``keras.callbacks.LearningRateScheduler`` (https://keras.io/api/callbacks/learning_rate_scheduler/: a
``schedule(epoch, lr)`` function applied at each epoch's start) with the classic step-decay schedule
lr = lr0 * drop ** floor(epoch / epochs_drop) (Brownlee, "Using Learning Rate Schedules for Deep Learning Models
in Python with Keras", https://machinelearningmastery.com/using-learning-rate-schedules-deep-learning-models-
python-keras/: lr0 0.1, drop 0.5, every 10 epochs, SGD with momentum 0.9). Here every 5 epochs over 20 epochs, an
MLP 16-64-64-10 (ReLU, softmax) on 10-class blobs, batch 32, ``validation_split=0.2``. Each halving makes the
per-epoch loss drop a notch.

Measured (unguarded, one thread, 3.5 s, 1,260 steps): training loss per epoch 0.77, 0.26, 0.14, 0.12, 0.11 | 0.058,
0.020, ... | 0.0040, ... -> 0.0019 (ln 10 = 2.30 the trivial predictor's); validation loss 0.19, validation
accuracy 0.954 (chance 0.10).
"""
from __future__ import annotations

import math
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded  # noqa: E402
from benchmarks.corpus.healthy._common import teacher_classification  # noqa: E402

CASE = Case(name="keras_fit_step_decay", kind="healthy", cause=None, framework="keras_fit",
            source="https://keras.io/api/callbacks/learning_rate_scheduler/; step decay as in machinelearningmastery "
                   "'Using Learning Rate Schedules ... with Keras'",
            symptom="none: LR 0.1 -> 0.05 -> 0.025 -> 0.0125 at epochs 5, 10, 15")

CLASSES, EPOCHS = 10, 20


def step_decay(epoch: int, lr: float) -> float:
    return 0.1 * 0.5 ** (epoch // 5)


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    keras.utils.set_random_seed(0)
    x, y = teacher_classification(2500, 16, CLASSES, seed=201, spread=1.3)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(CLASSES, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, batch_size=32, epochs=EPOCHS, validation_split=0.2, verbose=0,
                        callbacks=[keras.callbacks.LearningRateScheduler(step_decay), *ctx.keras_callbacks()])
    h = history.history
    return ctx.outcome(h["val_loss"][-1], model=model, steps=EPOCHS * math.ceil(2000 / 32),
                       trivial_loss=math.log(CLASSES), loss_per_epoch=[round(v, 4) for v in h["loss"]],
                       val_accuracy=h["val_accuracy"][-1])
