"""Binary vectors mapped to real outputs by a Keras MLP with four wide sigmoid hidden layers.

Source: AI Stack Exchange 16557, "What could be the problem when a neural network with four hidden layers with the
sigmoid activation function is not learning?" (https://ai.stackexchange.com/questions/16557). Symptom: four hidden
layers of 500 sigmoid units, binary input vectors, real-valued outputs; "unable to learn", high loss even on the
training data. Accepted answer (John Doucette): the vanishing gradient: each sigmoid layer multiplies the
back-propagated error by at most 0.25, so the early layers barely learn; use ReLU. Fix here: ReLU in the hidden
layers, nothing else (same widths, optimizer, data).

Measured (unguarded, one thread; final_loss = training-set MSE, var(y) = 1): faulty 1.09, fixed 0.10.
"""
from __future__ import annotations

import numpy as np

from benchmarks.corpus.case import Case, Outcome, RunContext
from benchmarks.corpus.faulty._keras_common import fit_final_loss, keras_seeded

CASE = Case(name="keras_fit_deep_sigmoid", kind="faulty", cause="vanishing_gradient", framework="keras_fit",
            source="https://ai.stackexchange.com/questions/16557 (four hidden sigmoid layers not learning)",
            symptom="high loss even on the training data; the network does not learn",
            fix="ReLU instead of sigmoid in the hidden layers (accepted answer)")

EPOCHS, WIDTH = 12, 256


def make_data(n: int = 2000, dim: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Binary vectors and a real target from a random two-layer teacher, standardized."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 2, size=(n, dim)).astype(np.float32)
    w1, w2 = rng.normal(size=(dim, 16)), rng.normal(size=(16, 1))
    y = np.tanh((x - 0.5) @ w1 / 2) @ w2
    return x, ((y - y.mean()) / y.std()).astype(np.float32)


def run(ctx: RunContext) -> Outcome:
    keras = keras_seeded(0)
    x, y = make_data()
    activation = "relu" if ctx.fixed else "sigmoid"
    model = keras.Sequential([keras.Input((x.shape[1],)),
                              *[keras.layers.Dense(WIDTH, activation=activation) for _ in range(4)],
                              keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    model.fit(x, y, batch_size=32, epochs=EPOCHS, verbose=0, callbacks=ctx.keras_callbacks())
    return ctx.outcome(final_loss=fit_final_loss(model, x, y), model=model, steps=EPOCHS * 63)
