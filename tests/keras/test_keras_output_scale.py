"""``scale_output_steps`` on Keras' compiled steps (TensorFlow's tf.function, JAX): a variable's update is multiplied
on eager updates only, so there the effector refuses the order and the trial ends at once, not applied, with no
step of training thrown away (JAX's compiled step measures no Adam statistics, so it is not even proposed there) (on the torch backend the repair is carried out: tests/repair/test_output_scale.py)."""
from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
if keras.backend.backend() == "torch":
    pytest.skip("compiled fit steps: the TensorFlow and JAX backends", allow_module_level=True)

import trainguard.keras as tk  # noqa: E402


def test_the_output_layer_repair_is_not_applied_on_compiled_steps():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(-100, 100, size=(2000, 1)).astype(np.float32)  # Stack Overflow 52800582: y = x**4 raw
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(32, activation="sigmoid"),
                              keras.layers.Dense(32, activation="elu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    guard = tk.Guard(policy="auto")
    model.fit(x, x ** 4, batch_size=32, epochs=2, verbose=0, callbacks=[guard])
    started = [a for a in guard.actions if a.kind == "scale_output_steps"]
    verdicts = [a for a in guard.actions if a.kind == "trial" and a.params["repair"] == "scale_output_steps"]
    if keras.backend.backend() == "tensorflow":  # JAX's compiled step measures no Adam statistics: no proposal
        assert started
    assert all(a.effect["applied"] is False and "eager updates only" in a.effect["why"] for a in started)
    assert all(v.effect["applied"] is False and v.params["from_step"] == v.params["to_step"] for v in verdicts)
    assert len(verdicts) == len(started) and not any(a.kind == "rollback" for a in guard.actions)
