"""A Keras 1-D CNN classifier on standardized multichannel signals, with one sample left unstandardized.

Source: Cross Validated 413205, "How to handle timeseries extremes (sigma > 20) in deep learning?"
(https://stats.stackexchange.com/questions/413205). Symptom, as reported: standardized 16-channel EEG windows
classified by a CNN-LSTM with BatchNormalization; "I've inadvertently left in one sample in a batch of 32 as
nonstandardized, having it end up with sigma=52 - which almost always severely disrupted the model". The fix the
reporter applied: standardize that sample like the others (the question then moves on to genuine extremes).
Re-created: 4-channel windows (a class-dependent burst in noise), Conv1D -> BatchNormalization -> ReLU -> global
average pooling -> sigmoid, Adam, batch 32, six epochs; one training window is left at its raw scale (std 52)
and hits one batch per epoch. Fix here: that window standardized too, nothing else.

Measured (unguarded, one thread; final_loss = inference-mode binary cross-entropy on the standardized training
windows, the same data for both twins): faulty 0.34, fixed 0.24. In training mode the two runs differ only at and
after each batch holding the raw window (batch loss 0.66 against 0.51 at its first visit, step 93), but that batch
leaves its variance in BatchNormalization's moving statistics, so the model in inference mode is worse, as the
reporter saw ("BatchNormalization layers looked completely different in both train and inference modes").
"""
from __future__ import annotations

import numpy as np

from benchmarks.corpus.case import Case, Outcome, RunContext
from benchmarks.corpus.faulty._keras_common import fit_final_loss, keras_seeded

CASE = Case(name="keras_fit_unstandardized_sample", kind="faulty", cause="bad_batch", framework="keras_fit",
            source="https://stats.stackexchange.com/questions/413205 (one sample left unstandardized, sigma=52)",
            symptom="the one batch with the unstandardized sample severely disrupts training",
            fix="that sample standardized like the others (the reporter's fix)")

EPOCHS, LENGTH, CHANNELS, RAW_STD = 6, 64, 4, 52.0


def make_windows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise windows; class 1 carries a 6 Hz-like burst at a random place. Each window standardized per channel."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, LENGTH, CHANNELS))
    y = rng.integers(0, 2, n)
    t = np.arange(16)
    burst = np.sin(2 * np.pi * t / 5)[:, None] * rng.normal(1.0, 0.2, size=(1, CHANNELS))
    for i in np.flatnonzero(y):
        start = rng.integers(0, LENGTH - 16)
        x[i, start:start + 16] += 3.0 * burst
    x = (x - x.mean(axis=1, keepdims=True)) / x.std(axis=1, keepdims=True)
    return x.astype(np.float32), y.astype(np.float32)


def run(ctx: RunContext) -> Outcome:
    keras = keras_seeded(0)
    x_clean, y = make_windows(3000, seed=1)
    x = x_clean.copy()
    if not ctx.fixed:
        x[1234] *= RAW_STD  # the window left at its raw scale
    model = keras.Sequential([keras.Input((LENGTH, CHANNELS)), keras.layers.Conv1D(16, 5),
                              keras.layers.BatchNormalization(), keras.layers.Activation("relu"),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(x, y, batch_size=32, epochs=EPOCHS, verbose=0, callbacks=ctx.keras_callbacks())
    return ctx.outcome(final_loss=fit_final_loss(model, x_clean, y), model=model, steps=EPOCHS * 94)
