"""A Keras-3 custom loop fitting four standardized regression targets with Adam at epsilon 1e-8: the loss falls
smoothly for a long time, then training "goes haywire" and the loss grows again; a larger epsilon trains on.

Source: Stack Overflow 42327543, "Adam optimizer goes haywire after 200k batches, training loss grows"
(https://stackoverflow.com/questions/42327543). The reporter trains a multi-task network (four regression heads,
normalized inputs and outputs, batches of 200) with TensorFlow's Adam in a hand-written training op; after a couple
of 100k iterations of learning fine "everything breaks and the training loss grows", the same with the default
epsilon, and sooner at a learning rate of 1e-3 than at 1e-4. The answer: a known problem of Adam: close to the
optimum the running mean of the squared gradients v becomes very small, and when the gradients grow again they are
divided by about sqrt(v) + epsilon and the update explodes; increase epsilon (1e-8 by default) to 0.1, 0.01 or
0.001. Not float16: everything here is float32.

Here (Keras 3, torch backend): 256 standardized inputs of 8 features, four targets made by a fixed random tanh
"teacher" network (so the loss can reach ~0, as a well-fitting run approaches its optimum), standardized;
Dense(32, tanh) -> Dense(4), MSE on full batches of 256, ``Adam(3e-2, epsilon=1e-8)`` (TensorFlow 1's default
epsilon), 4,000 steps, a custom loop that hands the gradients to ``optimizer.apply``. The learning rate is higher
than the reporter's so the calm phase ends within seconds instead of hours. Fix: the answer's epsilon 0.01,
nothing else.

Measured (unguarded, one thread, ~7 s a run; final_loss = mean training MSE of the last 10% of steps, var(y) = 1):
faulty: 1.47 at step 0, a smooth fall to a best 200-step mean of 1.4e-5 (steps 850-1050), then the loss grows
again: 200-step means of ~1e-4 with spikes up to 3.8e-3 until the end, final 9.6e-5; fixed (epsilon 0.01): a
smooth fall all the way (largest loss after step 2000: 5.9e-5), final 1.1e-5, 8.8x lower.
"""
from __future__ import annotations

import numpy as np

from benchmarks.corpus.case import Case, Outcome, RunContext
from benchmarks.corpus.faulty._keras_common import close_loop, keras_seeded, loop_step, tail_mean

CASE = Case(name="keras_loop_so42327543_adam_eps_late_blowup", kind="faulty", cause="adam_epsilon",
            framework="keras_loop",
            source="https://stackoverflow.com/questions/42327543 (Adam optimizer goes haywire after 200k batches, "
                   "training loss grows)",
            symptom="after a long phase of learning fine the training loss grows again; v has shrunk near the "
                    "optimum and the returning gradients are divided by ~sqrt(v) + 1e-8",
            fix="Adam epsilon 0.01 instead of 1e-8 (the answer: 0.1, 0.01 or 0.001)")

SAMPLES, FEATURES, TARGETS, HIDDEN, STEPS, LR = 256, 8, 4, 32, 4000, 3e-2
EPSILON, FIXED_EPSILON = 1e-8, 1e-2


def teacher_data() -> tuple[np.ndarray, np.ndarray]:
    """Standardized inputs and four standardized targets from a fixed random tanh network (realizable)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(SAMPLES, FEATURES)).astype(np.float32)
    hidden = np.tanh(x @ rng.normal(size=(FEATURES, 16)) / 2)
    y = hidden @ rng.normal(size=(16, TARGETS)) / 2
    return x, ((y - y.mean(0)) / y.std(0)).astype(np.float32)


def run(ctx: RunContext) -> Outcome:
    keras = keras_seeded(0)
    import torch

    x, y = teacher_data()
    xb, yb = torch.from_numpy(x), torch.from_numpy(y)
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(HIDDEN, activation="tanh"),
                              keras.layers.Dense(TARGETS)])
    optimizer = ctx.keras_optimizer(
        keras.optimizers.Adam(LR, epsilon=FIXED_EPSILON if ctx.fixed else EPSILON), model)
    losses = []
    for step in range(STEPS):
        loss = keras.ops.mean(keras.ops.square(model(xb, training=True) - yb))
        loop_step(model, optimizer, loss, ctx.guarded, inputs=xb, targets=yb)
        losses.append(float(loss.detach()))
        ctx.log_scalar(step, loss=losses[-1])
        if not np.isfinite(losses[-1]):
            break
    close_loop(optimizer, ctx.guarded)
    return ctx.outcome(final_loss=tail_mean(losses), model=model, steps=len(losses))
