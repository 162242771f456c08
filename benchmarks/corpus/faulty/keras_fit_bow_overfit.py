"""A Keras bag-of-words sentiment classifier trained 20 epochs on a small corpus: validation loss turns upward.

Source: the TensorFlow for R tutorial "Overfitting and Underfitting" (https://r-tensorflow.netlify.app/tutorials/
beginners/basic-ml/tutorial_overfit_underfit; the Keras edition is tensorflow.org/tutorials/keras/
overfit_and_underfit), which shows this bug in its own baseline: IMDB reviews as multi-hot word vectors, Dense(16,
relu) -> Dense(16, relu) -> Dense(1, sigmoid), Adam, batch 512 (25,000 reviews), 20 epochs; the validation metric
peaks after a few epochs and then worsens while the training loss keeps falling. Its fixes: weight regularization
or dropout; here the dropout model (Dropout(0.5) after each hidden layer), nothing else. The corpus is generated:
600 training and 2,000 validation "reviews" over 2,000 words, sentiment carried by 60 of them; batch 32 keeps ~20
steps an epoch.

Measured (unguarded, one thread; final_loss = validation loss at the last epoch; best-epoch validation loss in
brackets): faulty 0.60 (0.50 at its best epoch, 7, then rising), fixed 0.56 (best 0.50 at epoch 13: dropout
delays the turn, as in the tutorial).
"""
from __future__ import annotations

import numpy as np

from benchmarks.corpus.case import Case, Outcome, RunContext
from benchmarks.corpus.faulty._keras_common import finite_or_nan, keras_seeded

CASE = Case(name="keras_fit_bow_overfit", kind="faulty", cause="overfitting", framework="keras_fit",
            source="https://r-tensorflow.netlify.app/tutorials/beginners/basic-ml/tutorial_overfit_underfit (baseline)",
            symptom="validation loss rises after a few epochs while the training loss keeps falling",
            fix="Dropout(0.5) after each hidden layer (the tutorial's dropout model)")

VOCAB, EPOCHS = 2000, 20


def make_reviews(n: int, rng: np.random.Generator, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Multi-hot vectors of ~40 words drawn from a Zipf-like vocabulary; the label follows the signed words."""
    freq = 1.0 / np.arange(1, VOCAB + 1)
    freq /= freq.sum()
    x = np.zeros((n, VOCAB), dtype=np.float32)
    for i in range(n):
        x[i, rng.choice(VOCAB, size=40, replace=False, p=freq)] = 1.0
    logits = x @ weights + rng.normal(0, 0.5, n)
    return x, (logits > 0).astype(np.float32)


def run(ctx: RunContext) -> Outcome:
    keras = keras_seeded(0)
    rng = np.random.default_rng(1)
    weights = np.zeros(VOCAB)
    weights[rng.choice(np.arange(5, 150), 60, replace=False)] = rng.choice([-2.0, 2.0], 60)
    x_train, y_train = make_reviews(600, rng, weights)
    x_val, y_val = make_reviews(2000, rng, weights)
    layers = [keras.Input((VOCAB,)), keras.layers.Dense(16, activation="relu")]
    layers += [keras.layers.Dropout(0.5)] if ctx.fixed else []
    layers += [keras.layers.Dense(16, activation="relu")]
    layers += [keras.layers.Dropout(0.5)] if ctx.fixed else []
    model = keras.Sequential(layers + [keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    history = model.fit(x_train, y_train, batch_size=32, epochs=EPOCHS, validation_data=(x_val, y_val), verbose=0,
                        callbacks=ctx.keras_callbacks())
    val = history.history["val_loss"]
    return ctx.outcome(final_loss=finite_or_nan(val[-1]), model=model, steps=EPOCHS * 19,
                       best_val_loss=float(min(val)), best_epoch=int(np.argmin(val)) + 1)
