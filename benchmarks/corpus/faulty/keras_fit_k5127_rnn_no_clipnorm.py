"""A Keras ``fit`` of a recurrent regressor with SGD and no ``clipnorm``: the loss turns NaN within a few batches;
with ``clipnorm=1.0`` it trains.

Source: keras-team/keras#5127, "why do the loss equal nan when i don't use clipnorm ?"
(https://github.com/keras-team/keras/issues/5127): "i know that clipnorm fix this issue ... why do i see loss=nan
when i don't use clipping of the gradient?"; answer: "the gradient gets really really large, which changes the
weight values a LOT... and this makes the loss NaN". Fix (the reporter's): the optimizer's ``clipnorm``.
The report does not show its model. Re-created with a recurrent network, where exploding gradients are most
common (Pascanu et al. 2013): a SimpleRNN without a squashing activation (``activation=None``, a linear state-space
model of the sequence), so the state and the gradient are products of 40 recurrent maps.

Here (Keras 3, torch backend): 2,000 sequences of 40 steps of 2 noise channels; the target (standardized) is a
weighted sum of the last 10 values of one channel plus the first 5 of the other; SimpleRNN(64, activation=None)
-> Dense(1), SGD(0.01, momentum=0.9), MSE, batch 32, 4 epochs (252 steps).
Fix: ``SGD(0.01, momentum=0.9, clipnorm=1.0)``; nothing else changes.
Measured (unguarded, one thread; final_loss = the training-set MSE from ``model.evaluate``, var(y) = 1): faulty:
running epoch-mean loss 3.84 after the first batch, 4.8, 15.5, inf after the fourth, NaN from then on, final nan;
fixed: epoch losses 0.54, 0.037, 0.022, 0.017, final 0.016 (~9 s CPU faulty, ~4 s fixed).
"""
from __future__ import annotations

import numpy as np

from benchmarks.corpus.case import Case, Outcome, RunContext
from benchmarks.corpus.faulty._keras_common import fit_final_loss, keras_seeded

CASE = Case(name="keras_fit_k5127_rnn_no_clipnorm", kind="faulty", cause="exploding_gradient",
            framework="keras_fit",
            source="https://github.com/keras-team/keras/issues/5127 (why do the loss equal nan when i don't use "
                   "clipnorm?)",
            symptom="loss nan without clipnorm; the gradient gets very large",
            fix="clipnorm=1.0 on the optimizer (the reporter's fix)")

SAMPLES, LENGTH, EPOCHS = 2000, 40, 4


def make_sequences(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(SAMPLES, LENGTH, 2)).astype(np.float32)
    y = (x[:, -10:, 0] * np.linspace(0.2, 1.0, 10)).sum(axis=1, keepdims=True)
    y = y + 0.5 * x[:, :5, 1].sum(axis=1, keepdims=True)
    return x, ((y - y.mean()) / y.std()).astype(np.float32)


def run(ctx: RunContext) -> Outcome:
    keras = keras_seeded(0)
    x, y = make_sequences(seed=1)
    model = keras.Sequential([keras.Input((LENGTH, 2)), keras.layers.SimpleRNN(64, activation=None),
                              keras.layers.Dense(1)])
    clip = {"clipnorm": 1.0} if ctx.fixed else {}
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, **clip), loss="mse")
    history = model.fit(x, y, batch_size=32, epochs=EPOCHS, verbose=0, callbacks=ctx.keras_callbacks())
    return ctx.outcome(fit_final_loss(model, x, y), model=model, steps=EPOCHS * 63,
                       loss_per_epoch=[float(v) for v in history.history["loss"]])
