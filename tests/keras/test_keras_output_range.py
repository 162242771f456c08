"""A Keras ``fit`` whose output sigmoid regresses targets outside [0, 1] (Stack Overflow 62641394: a sigmoid unit
on y = 2x + 1, stuck near 1): the live ``output_out_of_range`` WARNING and ``saturated_activation`` as the cause,
on each backend (tests/keras/conftest.py); the in-range twin and a BCE classifier get neither."""
from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import trainguard.keras as tk  # noqa: E402
from trainguard.core.findings import Severity  # noqa: E402


def _fit(targets: str, loss: str = "mse"):
    """Dense(16, relu) -> Dense(1, sigmoid) on x ~ U[0, 1]^4, Adam 1e-2, batch 32, 8 epochs of 16 steps;
    ``targets``: "out" y = 2 sum(x) + 1 in [1, 9], "in" sum(x) / 4, "labels" 0/1."""
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).random((512, 4)).astype("float32")
    s = x.sum(1, keepdims=True)
    y = {"out": 2 * s + 1, "in": s / 4, "labels": (s > 2).astype("float32")}[targets]
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    guard = tk.Guard(policy="observe")
    model.fit(x, y, epochs=8, batch_size=32, verbose=0, callbacks=[guard])
    return [f for f in guard.findings if f.severity >= Severity.WARNING], guard.diagnose()


def test_a_sigmoid_output_on_targets_in_1_to_9_warns_and_names_saturated_activation():
    loud, causes = _fit("out")
    assert [f.code for f in loud] == ["output_out_of_range"]
    assert loud[0].evidence["activation"] == "sigmoid" and loud[0].evidence["outside"] > 5
    assert causes[0].code == "saturated_activation" and causes[0].confidence >= 0.8


@pytest.mark.parametrize("targets, loss", [("in", "mse"), ("labels", "binary_crossentropy")])
def test_targets_inside_the_range_are_quiet(targets, loss):
    loud, causes = _fit(targets, loss)
    assert loud == [] and causes == []
