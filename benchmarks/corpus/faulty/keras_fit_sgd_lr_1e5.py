"""A Keras classifier trained by SGD at lr 1e-5: loss and accuracy stuck at their first-epoch values.

Source: Chen Zhang's notes, "Loss and accuracy get stuck in Keras" (https://chenzhang.org/notes/developer/
loss-and-accuracy-get-stuck-in-keras/), a problem report with its fix: a Keras classifier whose loss sits at 1.91
with accuracy 0.54 epoch after epoch (1.9112 -> 1.9105 -> 1.9105 ...); fix: "increase learning [rate] from 0.00001
to 0.1" with ``SGD(lr=0.1, decay=1e-6, momentum=0.9, nesterov=True)``. Re-created: an MLP on a 7-class task (the
report's loss 1.91 is near ln 7 = 1.95), ``SGD(momentum=0.9, nesterov=True)`` at 1e-5 (faulty) and 0.1 (fixed);
Keras 3's SGD has no ``decay`` argument, so neither twin has it.

Measured (unguarded, one thread; final_loss = training-set cross-entropy): faulty 1.97 (ln 7 = 1.95: it learned
nothing), fixed 0.0002.
"""
from __future__ import annotations

from benchmarks.corpus.case import Case, Outcome, RunContext
from benchmarks.corpus.faulty._keras_common import fit_final_loss, keras_seeded
from benchmarks.corpus.healthy._common import teacher_classification

CASE = Case(name="keras_fit_sgd_lr_1e5", kind="faulty", cause="lr_too_low", framework="keras_fit",
            source="https://chenzhang.org/notes/developer/loss-and-accuracy-get-stuck-in-keras/ (SGD lr 1e-5)",
            symptom="loss 1.9112 -> 1.9105 -> 1.9105 ... and accuracy constant across epochs",
            fix="SGD learning rate 0.1 instead of 1e-5 (the note's fix)")

CLASSES, EPOCHS = 7, 10


def run(ctx: RunContext) -> Outcome:
    keras = keras_seeded(0)
    x, y = teacher_classification(3000, 20, CLASSES, seed=1)
    y_onehot = keras.utils.to_categorical(y, CLASSES)
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(CLASSES, activation="softmax")])
    sgd = keras.optimizers.SGD(learning_rate=0.1 if ctx.fixed else 1e-5, momentum=0.9, nesterov=True)
    model.compile(loss="categorical_crossentropy", optimizer=sgd, metrics=["accuracy"])
    model.fit(x, y_onehot, batch_size=32, epochs=EPOCHS, verbose=0, callbacks=ctx.keras_callbacks())
    return ctx.outcome(final_loss=fit_final_loss(model, x, y_onehot), model=model, steps=EPOCHS * 94)
