"""Shared by the Keras and HF Trainer faulty cases: the Keras import on the torch backend, the step of a Keras-3
custom loop (guarded or not), the final-loss measures and generated data sets. Every data set is made in the
program from a fixed seed, so each case's figures reproduce."""
from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from benchmarks.corpus.case import seeded

__all__ = [
    "TokenDataset",
    "close_loop",
    "finite_or_nan",
    "fit_final_loss",
    "keras_seeded",
    "loop_step",
    "tail_mean",
    "token_language",
]


def keras_seeded(seed: int = 0) -> Any:
    """Imports Keras on the torch backend (the corpus runs on it; a backend already chosen is kept) and seeds it."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    seeded(seed)
    keras.utils.set_random_seed(seed)
    return keras


def finite_or_nan(value: float) -> float:
    value = float(value)
    return value if math.isfinite(value) else math.nan


def fit_final_loss(model: Any, x: Any, y: Any) -> float:
    """The loss of the finished model on the whole training set (``model.evaluate``): the same measure for a faulty
    ``fit`` and its fixed twin, nan when the weights went non-finite."""
    result = model.evaluate(x, y, batch_size=256, verbose=0)
    return finite_or_nan(result[0] if isinstance(result, list) else result)


def tail_mean(losses: list[float], fraction: float = 0.1) -> float:
    """Mean of the last ``fraction`` of the per-step losses; nan if any of them is non-finite."""
    tail = losses[-max(1, int(len(losses) * fraction)):]
    return finite_or_nan(float(np.mean(tail))) if all(math.isfinite(v) for v in tail) else math.nan


def loop_step(model: Any, optimizer: Any, loss: Any, guarded: bool, inputs: Any = None, targets: Any = None) -> None:
    """The update of a Keras-3 custom loop on the torch backend (the pattern of keras.io's "Writing a training loop
    from scratch in PyTorch"): backward, read each variable's ``.grad``, ``optimizer.apply``. A guarded loop hands
    the loss (and the batch) to ``GuardedOptimizer.apply`` as docs/keras.md shows."""
    import torch

    model.zero_grad()
    loss.backward()
    grads = [v.value.grad for v in model.trainable_weights]
    with torch.no_grad():
        if guarded:
            optimizer.apply(grads, model.trainable_weights, loss=loss, inputs=inputs, targets=targets)
        else:
            optimizer.apply(grads, model.trainable_weights)


def close_loop(optimizer: Any, guarded: bool) -> None:
    if guarded:
        optimizer.close()


def token_language(n_sequences: int, length: int, vocab: int, seed: int) -> np.ndarray:
    """Sequences from a random sparse bigram chain (each token has 3 likely successors): a language a tiny
    transformer learns well below the uniform loss ln(vocab), from a few hundred steps."""
    rng = np.random.default_rng(seed)
    successors = rng.integers(0, vocab, size=(vocab, 3))
    weights = np.array([0.6, 0.3, 0.1])
    seqs = np.empty((n_sequences, length), dtype=np.int64)
    seqs[:, 0] = rng.integers(0, vocab, n_sequences)
    for t in range(1, length):
        choice = rng.choice(3, size=n_sequences, p=weights)
        seqs[:, t] = successors[seqs[:, t - 1], choice]
    return seqs


class TokenDataset:
    """A map-style dataset of ``{"input_ids", "labels"}`` dicts for a causal LM under the HF Trainer."""

    def __init__(self, seqs: np.ndarray):
        import torch

        self.seqs = torch.from_numpy(seqs)

    def __len__(self) -> int:
        return len(self.seqs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.seqs[i], "labels": self.seqs[i]}
