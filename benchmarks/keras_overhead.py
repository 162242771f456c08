"""What the Keras guard costs ``model.fit``: bare vs a no-op callback vs ``Guard`` under each policy, on CPU.

The same small MLP (20 -> width -> width -> 1, Adam, batch 32, seed 003's standardized regression data) is
fitted once per configuration and round; rounds interleave the configurations so drift in the machine's speed
hits all alike, and each configuration's fastest round is kept. Times are CPU time of the training thread
(``time.thread_time``, one intra-op thread): on a shared machine, wall time also counts the other processes'
turns. The no-op callback shows what any batch-level callback costs in Keras (it then converts the logs every
batch); the guard's own cost is the difference from it.

    KERAS_BACKEND=torch python -m benchmarks.keras_overhead [--width 256] [--epochs 5] [--rounds 3]

On TensorFlow and JAX the step is compiled; a guarded fit traces its own train function once (a fixed cost of the
fit, not of each step): use enough epochs that it does not dominate. There the times are the process's CPU time,
one intra-op thread.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402

CONFIGS = ("bare", "noop-callback", "observe", "safe", "auto")
BATCH = 32


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(1)
    x = rng.standard_normal((512, 20)).astype(np.float32)
    coef = np.zeros(20)
    coef[:10] = 100 * rng.uniform(size=10)
    y = x @ coef + 0.1 * rng.standard_normal(512)
    return x, ((y - y.mean()) / y.std()).astype(np.float32)


def _fit_seconds(config: str, width: int, epochs: int, x: np.ndarray, y: np.ndarray) -> float:
    import keras

    import trainguard.keras as tk

    class Noop(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            pass

    if config == "bare":
        callbacks = []
    elif config == "noop-callback":
        callbacks = [Noop()]
    else:
        callbacks = [tk.Guard(policy=config)]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(width, activation="relu"),
                              keras.layers.Dense(width, activation="relu"), keras.layers.Dense(1)])
    model.compile(loss="mse", optimizer=keras.optimizers.Adam(1e-3))
    model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0)  # warm-up: the first steps build everything
    # TensorFlow and XLA run the step on their own (single, see main) threads: the process's CPU time there.
    clock = time.thread_time if keras.backend.backend() == "torch" else time.process_time
    start = clock()
    model.fit(x, y, epochs=epochs, batch_size=BATCH, verbose=0, callbacks=callbacks)
    return clock() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if os.environ["KERAS_BACKEND"] == "jax":
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    import keras

    if keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(1)
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    x, y = _data()
    times: dict[str, list[float]] = {c: [] for c in CONFIGS}
    for _ in range(args.rounds):
        for config in CONFIGS:
            times[config].append(_fit_seconds(config, args.width, args.epochs, x, y))
    steps = args.epochs * (len(x) // BATCH)
    best = {c: min(t) for c, t in times.items()}
    clock = "the training thread" if keras.backend.backend() == "torch" else "the process"
    print(f"keras {keras.__version__} ({keras.backend.backend()}), MLP 20-{args.width}-{args.width}-1, "
          f"{steps} steps, best of {args.rounds} rounds (CPU time of {clock})")
    for config in CONFIGS:
        extra = (best[config] - best["noop-callback"]) / steps * 1e3
        print(f"  {config:14s} {best[config] / steps * 1e3:6.2f} ms/step  {best[config] / best['bare']:.2f}x bare"
              + (f"  guard's own {extra:+.2f} ms/step" if config in ("observe", "safe", "auto") else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
