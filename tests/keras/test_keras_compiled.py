"""``model.fit`` with compiled steps (TensorFlow's tf.function, XLA, JAX's jit): ``jit_compile=True`` and
``steps_per_execution > 1``. What the guard measures leaves the step through variables; it sees the last update of
each call of the train function, and no part of the guard fails there. The torch backend allows only
``steps_per_execution=1`` and its ``jit_compile`` (torch.compile) is not supported by the guard (docs/keras.md)."""
from __future__ import annotations

import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")
if keras.backend.backend() == "torch":
    pytest.skip("compiled fit steps: the TensorFlow and JAX backends", allow_module_level=True)

import trainguard.keras as tk  # noqa: E402

from _keras_seeds import seed003  # noqa: E402
from test_keras_fit import build, data, weights  # noqa: E402

COMPILED = {"jit": {"jit_compile": True}, "spe4": {"steps_per_execution": 4}}


def compiled(compile_args: dict):
    model = build()
    model.compile(optimizer=model.optimizer, loss="binary_crossentropy", metrics=["accuracy"], **compile_args)
    return model


@pytest.mark.parametrize("name", COMPILED)
def test_a_healthy_compiled_fit_is_measured_and_left_alone(name):
    args = COMPILED[name]
    x, y = data()
    bare = compiled(args)
    bare.fit(x, y, epochs=2, batch_size=32, verbose=0)
    model = compiled(args)
    guard = tk.Guard(policy="safe", preset="full")
    model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[guard])
    for a, b in zip(weights(bare), weights(model)):
        np.testing.assert_array_equal(a, b)
    assert guard.findings == [] and guard.actions == []
    every = args.get("steps_per_execution", 1)
    # One record per call of the train function: its last update, numbered as the updates are.
    assert [s.step for s in guard.history] == list(range(every - 1, 16, every))
    first = guard.history[0]
    assert math.isfinite(first.loss) and first.grad_norm > 0 and first.batch_size == 32
    assert first.inputs is not None and first.targets.abs_max == 1.0
    assert {a.kind for a in first.activations} >= {"relu", "output"}
    assert first.eval_mode_modules == ()
    assert all(layer.update_ratio is None for layer in first.layers) == (every > 1)


@pytest.mark.parametrize("name", ["jit", "spe4"])
def test_seed003_is_repaired_in_a_compiled_fit(name):
    guard = tk.Guard(policy="auto")
    losses = seed003(guard, epochs=10, **COMPILED[name])
    if name == "spe4":
        # The guard decides between calls of the train function: the first explosion happens inside one call
        # of 4 updates, before any order can reach it; it is repaired from there on.
        assert all(math.isfinite(v) for v in losses[2:]) and losses[-1] < losses[2], losses
    else:
        assert all(math.isfinite(v) for v in losses), losses
    assert "guard_internal_error" not in [f.code for f in guard.findings]
    assert {a.kind for a in guard.actions} & {"skip_step", "clip", "lr_backoff", "rollback"}
    assert not math.isfinite(seed003(None, epochs=10, **COMPILED[name])[-1])  # the unguarded run goes NaN
