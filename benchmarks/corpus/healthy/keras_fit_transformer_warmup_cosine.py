"""Keras ``fit`` of a small transformer text classifier with a warm-up + cosine learning-rate schedule object.

Recipe: the Keras code example "Text classification with Transformer" (https://keras.io/examples/nlp/
text_classification_with_transformer/: a ``TokenAndPositionEmbedding`` layer, one transformer block
(``MultiHeadAttention``, a feed-forward Dense pair, two ``LayerNormalization``, dropout 0.1), global average
pooling, dropout, a Dense(20, relu) and a softmax head, ``sparse_categorical_crossentropy``, Adam, batch 32),
with ``keras.optimizers.schedules.CosineDecay(initial_learning_rate=0, warmup_target=2e-3, warmup_steps=50)``
(https://keras.io/api/optimizers/learning_rate_schedules/cosine_decay/) as the optimizer's learning rate. Embedding
width 32, 2 heads, token sequences of length 40 (vocabulary 1,000, 3 classes carried by marker tokens), 4 epochs
(300 steps).

Measured (unguarded, one thread, 5.7 s): training loss per epoch 0.80, 0.070, 0.019, 0.0085 (ln 3 = 1.10 the
trivial predictor's); validation loss 0.101, 0.127, 0.019, 0.019; validation accuracy 0.993.
"""
from __future__ import annotations

import math
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded  # noqa: E402
from benchmarks.corpus.healthy._common import token_sequences  # noqa: E402

CASE = Case(name="keras_fit_transformer_warmup_cosine", kind="healthy", cause=None, framework="keras_fit",
            source="https://keras.io/examples/nlp/text_classification_with_transformer/; keras CosineDecay with "
                   "warmup_target",
            symptom="none: LR 0 -> 2e-3 over 50 steps (schedule object, per step) then cosine to 0")

CLASSES, LENGTH, VOCAB, WIDTH, EPOCHS, BATCH = 3, 40, 1000, 32, 4, 32


class TokenAndPositionEmbedding(keras.layers.Layer):
    def __init__(self, **kwargs: object):
        super().__init__(**kwargs)
        self.tokens = keras.layers.Embedding(VOCAB, WIDTH)
        self.positions = keras.layers.Embedding(LENGTH, WIDTH)

    def call(self, x: object) -> object:
        return self.tokens(x) + self.positions(keras.ops.arange(LENGTH))


class TransformerBlock(keras.layers.Layer):
    def __init__(self, **kwargs: object):
        super().__init__(**kwargs)
        self.attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=WIDTH)
        self.feed_forward = keras.Sequential([keras.layers.Dense(WIDTH, activation="relu"),
                                              keras.layers.Dense(WIDTH)])
        self.norm1, self.norm2 = keras.layers.LayerNormalization(epsilon=1e-6), keras.layers.LayerNormalization(
            epsilon=1e-6)
        self.dropout1, self.dropout2 = keras.layers.Dropout(0.1), keras.layers.Dropout(0.1)

    def call(self, x: object, training: bool = False) -> object:
        h = self.norm1(x + self.dropout1(self.attention(x, x), training=training))
        return self.norm2(h + self.dropout2(self.feed_forward(h), training=training))


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    keras.utils.set_random_seed(0)
    x, y = token_sequences(3000, LENGTH, VOCAB, seed=361, classes=CLASSES)
    steps = EPOCHS * math.ceil(2400 / BATCH)
    schedule = keras.optimizers.schedules.CosineDecay(initial_learning_rate=0.0, decay_steps=steps - 50,
                                                      warmup_target=2e-3, warmup_steps=50)
    inputs = keras.Input((LENGTH,), dtype="int64")
    h = TransformerBlock()(TokenAndPositionEmbedding()(inputs))
    h = keras.layers.GlobalAveragePooling1D()(h)
    h = keras.layers.Dense(20, activation="relu")(keras.layers.Dropout(0.1)(h))
    model = keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(keras.layers.Dropout(0.1)(h)))
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x[:2400], y[:2400], batch_size=BATCH, epochs=EPOCHS, verbose=0,
                        validation_data=(x[2400:], y[2400:]), callbacks=ctx.keras_callbacks())
    h = history.history
    return ctx.outcome(h["val_loss"][-1], model=model, steps=steps, trivial_loss=math.log(CLASSES),
                       loss_per_epoch=[round(v, 4) for v in h["loss"]],
                       val_loss_per_epoch=[round(v, 4) for v in h["val_loss"]], val_accuracy=h["val_accuracy"][-1])
