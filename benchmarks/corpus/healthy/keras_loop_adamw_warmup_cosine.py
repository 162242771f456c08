"""A Keras custom loop training a one-block attention classifier with AdamW (decoupled weight decay 0.01) under a
linear warm-up then cosine LR schedule.

Recipe: ``keras.optimizers.AdamW`` (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019) with
``keras.optimizers.schedules.CosineDecay(..., warmup_target=..., warmup_steps=...)``
(https://keras.io/api/optimizers/learning_rate_schedules/cosine_decay/: "linear warmup followed by cosine decay",
the schedule of "SGDR" and of transformer fine-tuning recipes), in a loop written as the Keras guide "Writing a
training loop from scratch in PyTorch" shows (torch backend). Here: token sequences of 40 ids (vocabulary 120)
whose class (of 2) is set by a few marker tokens among decoys; Embedding(120, 32) (no position embedding: the
class does not depend on order), MultiHeadAttention(2 heads x 16) with a residual and LayerNormalization, a
position-wise Dense(64, relu) block with a residual and LayerNormalization, average pooling and a softmax head;
AdamW(weight_decay=0.01), LR 1e-5 -> 3e-3 over 40 warm-up steps then cosine to 0 at step 400, batch 32.

Measured (unguarded, one thread, ~7 s CPU): training loss 0.70 over the first 10 steps (ln 2 = 0.69) -> 0.0009
(last 10%), never above 0.23 after step 50; held-out loss 0.011, accuracy 0.996 on 500 sequences.
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
from benchmarks.corpus.healthy._common import Batches, tail_mean, token_sequences  # noqa: E402

CASE = Case(name="keras_loop_adamw_warmup_cosine", kind="healthy", cause=None, framework="keras_loop",
            source="keras.optimizers.AdamW with schedules.CosineDecay(warmup_target, warmup_steps) "
                   "(https://keras.io/api/optimizers/learning_rate_schedules/cosine_decay/), in a torch-backend "
                   "custom loop as in the Keras guide 'Writing a training loop from scratch in PyTorch'",
            symptom="none: LR warm-up 1e-5 -> 3e-3 over 40 steps, then cosine decay to 0; decoupled weight decay")

VOCAB, LENGTH, CLASSES, STEPS, WARMUP, BATCH, PEAK = 120, 40, 2, 400, 40, 32, 3e-3


def attention_classifier() -> keras.Model:
    tokens = keras.Input((LENGTH,), dtype="int32")
    h = keras.layers.Embedding(VOCAB, 32)(tokens)
    h = keras.layers.LayerNormalization()(h + keras.layers.MultiHeadAttention(2, 16)(h, h))
    h = keras.layers.LayerNormalization()(h + keras.layers.Dense(32)(keras.layers.Dense(64, activation="relu")(h)))
    pooled = keras.layers.GlobalAveragePooling1D()(h)
    return keras.Model(tokens, keras.layers.Dense(CLASSES, activation="softmax")(pooled))


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    keras.utils.set_random_seed(0)
    x, y = token_sequences(3000, LENGTH, VOCAB, seed=441, classes=CLASSES)
    x_train, y_train, x_test, y_test = x[:2500], y[:2500], x[2500:], y[2500:]
    model = attention_classifier()
    schedule = keras.optimizers.schedules.CosineDecay(1e-5, decay_steps=STEPS - WARMUP, warmup_target=PEAK,
                                                      warmup_steps=WARMUP)
    optimizer = ctx.keras_optimizer(keras.optimizers.AdamW(learning_rate=schedule, weight_decay=0.01), model)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    batches = Batches((x_train.astype(np.int32), y_train), BATCH, seed=442)
    losses = []
    for step in range(STEPS):
        xb, yb = (torch.from_numpy(a) for a in batches.next())
        loss = loss_fn(yb, model(xb, training=True))
        loop_step(model, optimizer, loss, ctx.guarded, inputs=xb, targets=yb)
        losses.append(float(loss.item()))
        ctx.log_scalar(step, loss=losses[-1], lr=float(schedule(step)))
    close_loop(optimizer, ctx.guarded)
    probs = keras.ops.convert_to_numpy(model(torch.from_numpy(x_test.astype(np.int32)), training=False))
    test_loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(y_test)), y_test], 1e-7, 1.0))))
    return ctx.outcome(test_loss, model=model, steps=STEPS, first_loss=float(np.mean(losses[:10])),
                       train_tail=tail_mean(losses), trivial_loss=math.log(CLASSES),
                       test_accuracy=float((probs.argmax(1) == y_test).mean()))
