"""A Keras-3 custom loop training a recurrent network without gradient clipping: the gradients explode.

Source: tensorflow/tensorflow#45146, "Missing call to model.optimizer._clip_gradients(grads)?"
(https://github.com/tensorflow/tensorflow/issues/45146). Symptom: training a CRNN, the reporter applied
``clipnorm`` "to avoid exploding gradients, but the issue persisted" because the Keras training step of that
version never called the optimizer's clipping; fix, in the reporter's words: "modified the train_step method to
apply tf.clip_by_global_norm before calling the optimizer and so far it seems the exploding gradients problem is
gone". Re-created on the torch backend: a SimpleRNN (ReLU, recurrent kernel initialized at a gain of 1.3) reading
60-step sequences, SGD(0.01), a custom loop that hands the raw gradients to ``optimizer.apply``. Fix here: the
gradients clipped to a global norm of 1 before ``apply`` (``clip_by_global_norm`` on the torch backend), nothing
else.

Measured (unguarded, one thread; final_loss = mean training MSE of the last 10% of steps, var(y) = 1): faulty nan
(the loss is non-finite at the second step: the first update, from an exploded gradient, wrecks the weights;
the loop stops there), fixed 0.10. The recurrent state already grows over the 60 steps at initialization (first
loss 235 in both twins, var(y) = 1): the clipped twin recovers from it, the unclipped one takes one exploded step.
At gain 1.2 neither twin explodes.
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

CASE = Case(name="keras_loop_rnn_no_clip", kind="faulty", cause="exploding_gradient", framework="keras_loop",
            source="https://github.com/tensorflow/tensorflow/issues/45146 (CRNN, clipping never applied)",
            symptom="exploding gradients while training a recurrent network; the loss diverges",
            fix="clip the gradients to global norm 1 before optimizer.apply (the reporter's fix)")

STEPS, BATCH, LENGTH, CLIP, GAIN, LR = 300, 32, 60, 1.0, 1.3, 0.01


def make_sequences(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy sequences; the target is a weighted sum of the last ten inputs, standardized."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, LENGTH, 2)).astype(np.float32)
    y = (x[:, -10:, 0] * np.linspace(0.2, 1.0, 10)).sum(axis=1, keepdims=True) + x[:, -1:, 1]
    return x, ((y - y.mean()) / y.std()).astype(np.float32)


def run(ctx: RunContext) -> Outcome:
    keras = keras_seeded(0)
    import torch

    x, y = make_sequences(2000)
    model = keras.Sequential([
        keras.Input((LENGTH, 2)),
        keras.layers.SimpleRNN(32, activation="relu",
                               recurrent_initializer=keras.initializers.Orthogonal(gain=GAIN)),
        keras.layers.Dense(1)])
    optimizer = ctx.keras_optimizer(keras.optimizers.SGD(LR), model)
    rng = np.random.default_rng(2)
    losses = []
    for step in range(STEPS):
        idx = rng.integers(0, len(x), BATCH)
        xb, yb = torch.from_numpy(x[idx]), torch.from_numpy(y[idx])
        loss = keras.ops.mean(keras.ops.square(model(xb, training=True) - yb))
        if ctx.fixed:
            model.zero_grad()
            loss.backward()
            grads = [v.value.grad for v in model.trainable_weights]
            torch.nn.utils.clip_grad_norm_([v.value for v in model.trainable_weights], CLIP)
            with torch.no_grad():
                if ctx.guarded:
                    optimizer.apply(grads, model.trainable_weights, loss=loss, inputs=xb, targets=yb)
                else:
                    optimizer.apply(grads, model.trainable_weights)
        else:
            loop_step(model, optimizer, loss, ctx.guarded, inputs=xb, targets=yb)
        losses.append(float(loss.detach()))
        ctx.log_scalar(step, loss=losses[-1])
        if not np.isfinite(losses[-1]):
            break
    close_loop(optimizer, ctx.guarded)
    return ctx.outcome(final_loss=tail_mean(losses), model=model, steps=len(losses))
