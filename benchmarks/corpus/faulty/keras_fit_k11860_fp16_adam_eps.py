"""A Keras ``fit`` of a steering-angle regressor in float16 with Adam: the loss is NaN; SGD or float32 train.

Source: keras-team/keras#11860, "adam optimizer does not work with FP16"
(https://github.com/keras-team/keras/issues/11860). The reporter trains a racecar steering model (camera image in,
steering angle out, ``mse`` loss) in float16 with ``adam``: "the loss can't be calculated ... loss: nan"; "There is
no issue when using FP32, or changing the optimizer with FP16 (I tried both adamax and sgd)". Keras' Adam divides by
sqrt(v) + epsilon; at epsilon 1e-7 (Keras' default) float16 keeps almost nothing of epsilon, and the squared
gradients below ~2e-4 underflow to 0 in v, so the first updates are lr * m / ~1e-7.
Fix: the float16 recipe of keras-team/keras#11853 ("fp16 doesn't work"), whose working script sets
``K.set_floatx('float16')`` together with ``K.set_epsilon(1e-4)`` (Keras 2's Adam took its epsilon from
``K.epsilon()``); in Keras 3, ``Adam(epsilon=1e-4)``. Nothing else changes.

Here (Keras 3, torch backend): 16x16 "road" images (a bright lane line whose slant is the steering angle, plus
pixel noise) -> Flatten -> Dense(1024, relu) -> Dense(64, relu) -> Dense(1), every layer ``dtype="float16"``,
``Adam(1e-3)``, MSE, batch 32, 4 epochs (252 steps); 2,000 images.
Measured (unguarded, one thread, ~5 s; final_loss = the training-set MSE from ``model.evaluate``, var(angle) =
0.33): faulty: MSE 0.39 at the first batch, ~2e6 at the second, NaN from the third on, final nan; fixed (epsilon
1e-4): epoch losses 0.015, 0.0016, 0.0011, 0.0011, final 0.0016.
"""
from __future__ import annotations

import numpy as np

from benchmarks.corpus.case import Case, Outcome, RunContext
from benchmarks.corpus.faulty._keras_common import fit_final_loss, keras_seeded

CASE = Case(name="keras_fit_k11860_fp16_adam_eps", kind="faulty", cause="adam_epsilon", framework="keras_fit",
            source="https://github.com/keras-team/keras/issues/11860 (adam optimizer does not work with FP16); fix as "
                   "in keras-team/keras#11853 (set_epsilon(1e-4) with float16)",
            symptom="loss nan with float16 and Adam; fine in float32 or with SGD/Adamax",
            fix="Adam epsilon 1e-4 instead of Keras' default 1e-7")

SIZE, SAMPLES, EPOCHS = 16, 2000, 4


def road_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A lane line that slants with the steering angle (uniform in [-1, 1]), with pixel noise."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(-1.0, 1.0, n)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1.0)
    centre = 0.5 + angle[:, None, None] * (1.0 - rows) * 0.4
    images = np.exp(-(cols - centre) ** 2 / 0.005) + 0.1 * rng.normal(size=(n, SIZE, SIZE))
    return images[..., None].astype(np.float16), angle[:, None].astype(np.float16)


def run(ctx: RunContext) -> Outcome:
    keras = keras_seeded(0)
    x, y = road_images(SAMPLES, seed=1)
    half = "float16"
    model = keras.Sequential([keras.Input((SIZE, SIZE, 1)), keras.layers.Flatten(dtype=half),
                              keras.layers.Dense(1024, activation="relu", dtype=half),
                              keras.layers.Dense(64, activation="relu", dtype=half),
                              keras.layers.Dense(1, dtype=half)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-4 if ctx.fixed else 1e-7), loss="mse")
    history = model.fit(x, y, batch_size=32, epochs=EPOCHS, verbose=0, callbacks=ctx.keras_callbacks())
    return ctx.outcome(fit_final_loss(model, x, y), model=model, steps=EPOCHS * 63,
                       loss_per_epoch=[float(v) for v in history.history["loss"]],
                       target_variance=float(np.var(y.astype(np.float64))))
