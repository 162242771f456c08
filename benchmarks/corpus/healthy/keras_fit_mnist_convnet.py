"""Keras ``fit`` of the "Simple MNIST convnet" example: two conv blocks, dropout 0.5, Adam, batch 128.

Recipe: the Keras code example "Simple MNIST convnet" (https://keras.io/examples/vision/mnist_convnet/: Conv2D 32
and 64 (3x3, ReLU) each followed by MaxPooling2D, Flatten, Dropout(0.5), Dense softmax;
``categorical_crossentropy``, Adam, batch 128, ``validation_split=0.1``), on 16x16 images of 10 noisy shifted
templates (4,000 images, channels last) for the example's 15 epochs, its channel counts halved (16, 32).
Dropout makes the training loss sit above the validation loss for most of the run.

Measured (unguarded, one thread, 7.3 s, 435 steps): training loss per epoch 2.25 -> 1.31 (epoch 4) -> 0.69 (epoch
15); validation loss 2.01 -> 0.99 -> 0.51, always below the training loss; validation accuracy 0.83 (ln 10 = 2.30
and 0.10 for the trivial predictor).
"""
from __future__ import annotations

import math
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded  # noqa: E402
from benchmarks.corpus.healthy._common import pattern_images  # noqa: E402

CASE = Case(name="keras_fit_mnist_convnet", kind="healthy", cause=None, framework="keras_fit",
            source="https://keras.io/examples/vision/mnist_convnet/",
            symptom="none: training loss above the validation loss (dropout 0.5)")

CLASSES, EPOCHS = 10, 15


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    keras.utils.set_random_seed(0)
    x, y = pattern_images(4000, CLASSES, seed=221, noise=0.7)
    x = np.transpose(x, (0, 2, 3, 1))  # channels last, as Keras expects
    y_onehot = keras.utils.to_categorical(y, CLASSES)
    model = keras.Sequential([
        keras.Input((16, 16, 1)),
        keras.layers.Conv2D(16, (3, 3), activation="relu"), keras.layers.MaxPooling2D((2, 2)),
        keras.layers.Conv2D(32, (3, 3), activation="relu"), keras.layers.MaxPooling2D((2, 2)),
        keras.layers.Flatten(), keras.layers.Dropout(0.5), keras.layers.Dense(CLASSES, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    history = model.fit(x, y_onehot, batch_size=128, epochs=EPOCHS, validation_split=0.1, verbose=0,
                        callbacks=ctx.keras_callbacks())
    h = history.history
    return ctx.outcome(h["val_loss"][-1], model=model, steps=EPOCHS * math.ceil(3600 / 128),
                       trivial_loss=math.log(CLASSES), loss_per_epoch=[round(v, 3) for v in h["loss"]],
                       val_loss_per_epoch=[round(v, 3) for v in h["val_loss"]], val_accuracy=h["val_accuracy"][-1])
