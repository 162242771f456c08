"""A Keras-3 custom loop that scales the summed per-example loss by the configured batch size, also on the last,
smaller batch of each epoch.

Source: huggingface/transformers#6969, "Incorrect loss calculation for the last batch in TFTrainer if
dataloader_drop_last is False" (https://github.com/huggingface/transformers/issues/6969). The TF training step did
``scaled_loss = per_example_loss / self.total_train_batch_size``; with the last batch kept, that batch has fewer
examples, so its loss (and gradient) is divided by the wrong number; the maintainer confirmed: "if the batch size
becomes lower for the last step we divide by a wrong number". The fix: divide by the number of examples actually
in the batch. Re-created: a classifier trained by a custom loop, 1,000 examples in batches of 96, so each epoch
ends with a batch of 40 whose loss reads 40/96 of its true value. Fix here: the sum divided by the batch's own
size, nothing else.

Measured (unguarded, one thread; final_loss = mean per-example training loss of the last 10% of steps, computed
with the true size in both twins so the two are comparable): faulty 0.0100 (the loss the loop records and
optimizes dips to 40/96 of its value at every epoch's last step), fixed 0.0099: here the harm is the wrong
loss and the 0.42x gradient of one step in 11, not the end result.
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

CASE = Case(name="keras_loop_sum_over_fixed_batch", kind="faulty", cause="batch_size_dependent_loss",
            framework="keras_loop",
            source="https://github.com/huggingface/transformers/issues/6969 (last batch divided by the full size)",
            symptom="the last, smaller batch of every epoch gets a loss divided by the wrong number",
            fix="divide the summed per-example loss by the batch's actual size (maintainer's answer)")

CLASSES, EPOCHS, BATCH = 4, 30, 96


def run(ctx: RunContext) -> Outcome:
    keras = keras_seeded(0)
    import torch

    x, y = teacher_classification(1000, 16, CLASSES, seed=1)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(64, activation="relu"), keras.layers.Dense(CLASSES)])
    per_example = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    optimizer = ctx.keras_optimizer(keras.optimizers.Adam(1e-3), model)
    rng = np.random.default_rng(2)
    true_losses, step = [], 0
    for _ in range(EPOCHS):
        order = rng.permutation(len(x))
        for start in range(0, len(x), BATCH):
            idx = order[start:start + BATCH]
            xb, yb = torch.from_numpy(x[idx]), torch.from_numpy(y[idx])
            losses = per_example(yb, model(xb, training=True))
            divisor = len(idx) if ctx.fixed else BATCH
            loss = keras.ops.sum(losses) / divisor
            loop_step(model, optimizer, loss, ctx.guarded, inputs=xb, targets=yb)
            true_losses.append(float(keras.ops.mean(losses).detach()))
            ctx.log_scalar(step, loss=float(loss.detach()))
            step += 1
    close_loop(optimizer, ctx.guarded)
    return ctx.outcome(final_loss=tail_mean(true_losses), model=model, steps=step)
