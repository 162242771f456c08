"""A Keras-3 custom training loop that calls ``model(x)`` without ``training=True`` on a network that needs its
BatchNormalization.

Source: tensorflow/tensorflow#31184, "Transfer learning trained by custom TF 2.0 training loop performs worse than
keras fit" (https://github.com/tensorflow/tensorflow/issues/31184). Symptom: the same model trained by a
GradientTape loop learns far worse than with ``model.fit``. Resolution in the thread: the loop called the model
without ``training=True``, so its BatchNormalization layers ran in inference mode (moving statistics, never
updated) instead of normalizing each batch; "Those models with BN layers requires the argument training=True".
Re-created on the torch backend: raw-scale inputs (large offsets and scales per feature, as raw pixels or
unnormalized features are) into Dense -> BatchNormalization -> ReLU twice, SGD(0.01, momentum 0.9), the
loss.backward() / optimizer.apply loop of keras.io's PyTorch custom-loop guide. Fix here: ``model(x,
training=True)`` in the training step, nothing else. This is not seed 000's program (a model.fit vs. step-wise
SGD comparison that exploded); it is a different report of the same mistake.

Measured (unguarded, one thread; final_loss = mean training loss of the last 10% of steps): faulty 1.61 (ln 5 =
1.61: the un-normalized activations leave the 5-class loss at chance), fixed 0.023.
"""
from __future__ import annotations

import numpy as np

from benchmarks.corpus.case import Case, Outcome, RunContext
from benchmarks.corpus.faulty._keras_common import (
    close_loop,
    keras_seeded,
    loop_step,
    tail_mean,
)
from benchmarks.corpus.healthy._common import teacher_classification

CASE = Case(name="keras_loop_bn_no_training_flag", kind="faulty", cause="bn_inference_mode", framework="keras_loop",
            source="https://github.com/tensorflow/tensorflow/issues/31184 (custom loop without training=True)",
            symptom="the custom training loop learns far worse than model.fit on the same model",
            fix="model(x, training=True) in the training step (the thread's resolution)")

CLASSES, STEPS, BATCH = 5, 400, 64


def run(ctx: RunContext) -> Outcome:
    keras = keras_seeded(0)
    import torch

    x, y = teacher_classification(4000, 24, CLASSES, seed=1)
    rng = np.random.default_rng(2)
    x = x * rng.uniform(2, 20, size=24).astype(np.float32) + rng.uniform(0, 50, size=24).astype(np.float32)
    model = keras.Sequential([keras.Input((24,)), keras.layers.Dense(64), keras.layers.BatchNormalization(),
                              keras.layers.Activation("relu"), keras.layers.Dense(64),
                              keras.layers.BatchNormalization(), keras.layers.Activation("relu"),
                              keras.layers.Dense(CLASSES)])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = ctx.keras_optimizer(keras.optimizers.SGD(0.01, momentum=0.9), model)
    losses = []
    for step in range(STEPS):
        idx = rng.integers(0, len(x), BATCH)
        xb, yb = torch.from_numpy(x[idx]), torch.from_numpy(y[idx])
        logits = model(xb, training=True) if ctx.fixed else model(xb)
        loss = loss_fn(yb, logits)
        loop_step(model, optimizer, loss, ctx.guarded, inputs=xb, targets=yb)
        losses.append(float(loss.detach()))
        ctx.log_scalar(step, loss=losses[-1])
    close_loop(optimizer, ctx.guarded)
    return ctx.outcome(final_loss=tail_mean(losses), model=model, steps=STEPS)
