"""Keras ``fit`` of a text classifier from scratch: Embedding -> Conv1D -> GlobalMaxPooling -> Dense, binary.

Recipe: the Keras code example "Text classification from scratch" (https://keras.io/examples/nlp/
text_classification_from_scratch/: ``Embedding``, ``Dropout(0.5)``, two ``Conv1D(128, 7, strides=3)``,
``GlobalMaxPooling1D``, a Dense layer, a sigmoid output, ``binary_crossentropy`` with Adam, 3 epochs), shrunk to
width 32 and 8 epochs, on 3,000 synthetic "reviews" of 80 tokens (vocabulary 2,000) whose label is carried by a
handful of sentiment-marker tokens among random ones, with a decoy marker of the other class in half of them.

Measured (unguarded, one thread, 5.6 s, 600 steps): training loss per epoch 0.694, 0.690 (two epochs at ln 2 =
0.693, the trivial predictor's), 0.477, 0.088, ..., 0.014; validation loss 0.692, 0.684, 0.146, then 0.125-0.162
(mild overfitting); validation accuracy 0.95 (chance 0.50).
"""
from __future__ import annotations

import math
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded  # noqa: E402
from benchmarks.corpus.healthy._common import token_sequences  # noqa: E402

CASE = Case(name="keras_fit_text_conv1d", kind="healthy", cause=None, framework="keras_fit",
            source="https://keras.io/examples/nlp/text_classification_from_scratch/",
            symptom="none: binary text classifier, loss from ln 2 down; dropout 0.5 on embeddings")

VOCAB, LENGTH, EPOCHS = 2000, 80, 8


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    keras.utils.set_random_seed(0)
    x, y = token_sequences(3000, LENGTH, VOCAB, seed=231)
    model = keras.Sequential([
        keras.Input((LENGTH,), dtype="int64"), keras.layers.Embedding(VOCAB, 32), keras.layers.Dropout(0.5),
        keras.layers.Conv1D(32, 7, padding="valid", activation="relu", strides=3),
        keras.layers.Conv1D(32, 7, padding="valid", activation="relu", strides=3),
        keras.layers.GlobalMaxPooling1D(), keras.layers.Dense(32, activation="relu"), keras.layers.Dropout(0.5),
        keras.layers.Dense(1, activation="sigmoid")])
    model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
    history = model.fit(x, y.astype("float32"), batch_size=32, epochs=EPOCHS, validation_split=0.2, verbose=0,
                        callbacks=ctx.keras_callbacks())
    h = history.history
    return ctx.outcome(h["val_loss"][-1], model=model, steps=EPOCHS * math.ceil(2400 / 32),
                       trivial_loss=math.log(2), loss_per_epoch=[round(v, 3) for v in h["loss"]],
                       val_loss_per_epoch=[round(v, 3) for v in h["val_loss"]], val_accuracy=h["val_accuracy"][-1])
