"""A Keras custom training loop on the torch backend: MLP classifier, Adam, from-logits sparse cross-entropy.

Recipe: the Keras guide "Writing a training loop from scratch in PyTorch"
(https://keras.io/guides/writing_a_custom_training_loop_in_torch/: a functional MLP 784-64-64-10 with ReLU, logits
out, ``SparseCategoricalCrossentropy(from_logits=True)``, ``Adam(1e-3)``, batch 32; per step ``model.zero_grad()``,
``loss.backward()``, the gradients read from ``v.value.grad``, ``optimizer.apply(gradients, trainable_weights)``
under ``torch.no_grad()``), on 16-dimensional 10-class blobs, 10 epochs (1,000 steps); guarded through
``GuardedOptimizer`` as docs/keras.md shows. Batch 32 with a hard task: a visibly noisy per-step loss.

Measured (unguarded, one thread, 1.6 s): training loss 2.23 over the first 10 steps (ln 10 = 2.30) -> 0.24 (last
10%); held-out loss 0.33, accuracy 0.88 (chance 0.10).
"""
from __future__ import annotations

import math
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded  # noqa: E402
from benchmarks.corpus.faulty._keras_common import close_loop, loop_step  # noqa: E402
from benchmarks.corpus.healthy._common import Batches, tail_mean, teacher_classification  # noqa: E402

CASE = Case(name="keras_loop_mlp_classifier", kind="healthy", cause=None, framework="keras_loop",
            source="https://keras.io/guides/writing_a_custom_training_loop_in_torch/",
            symptom="none: batch-32 cross-entropy, noisy per step, falling from ln 10")

CLASSES, EPOCHS, BATCH = 10, 10, 32


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    keras.utils.set_random_seed(0)
    x, y = teacher_classification(4000, 16, CLASSES, seed=251, spread=1.5)
    x_train, y_train, x_test, y_test = x[:3200], y[:3200], x[3200:], y[3200:]
    inputs = keras.Input((16,))
    h = keras.layers.Dense(64, activation="relu")(inputs)
    h = keras.layers.Dense(64, activation="relu")(h)
    model = keras.Model(inputs, keras.layers.Dense(CLASSES)(h))
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = ctx.keras_optimizer(keras.optimizers.Adam(1e-3), model)
    batches = Batches((x_train, y_train), BATCH, seed=252)
    losses = []
    for step in range(EPOCHS * len(x_train) // BATCH):
        xb, yb = (torch.from_numpy(a) for a in batches.next())
        loss = loss_fn(yb, model(xb, training=True))
        loop_step(model, optimizer, loss, ctx.guarded, inputs=xb, targets=yb)
        losses.append(float(loss.item()))
        ctx.log_scalar(step, loss=losses[-1])
    close_loop(optimizer, ctx.guarded)
    logits = model(torch.from_numpy(x_test), training=False)
    test_loss = float(loss_fn(torch.from_numpy(y_test), logits).item())
    accuracy = float((np.argmax(keras.ops.convert_to_numpy(logits), axis=1) == y_test).mean())
    return ctx.outcome(test_loss, model=model, steps=len(losses), first_loss=float(np.mean(losses[:10])),
                       trivial_loss=math.log(CLASSES), train_tail=tail_mean(losses), test_accuracy=accuracy)
