"""The saturation repairs of ``auto`` on Keras, on each backend (tests/keras/conftest.py): a tanh output stuck in
saturation on the wrong side scaled back (``shrink_saturated_output``, trainguard/core/policies/desaturate.py) and
a collapsed deep sigmoid stack renormalized on a batch (``renormalize_saturating_layers``, renormalize.py), each a
trial that is kept when the loss falls and rolled back when it does not; a healthy model is not touched."""
from __future__ import annotations

import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import trainguard.keras as tk  # noqa: E402
from trainguard.adapters.keras.effector import renormalize_on_batch, shrink_saturated_layers  # noqa: E402

from _keras_seeds import seed001_data  # noqa: E402

SEGMENTS = ["1111110", "0110000", "1101101", "1111001", "0110011", "1011011", "1011111", "1110000", "1111111",
            "1111011"]


def _values(variable) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(variable))


def _segments(policy: str | None, stuck: bool, epochs: int):
    """Stack Overflow 13632976's 4-20-7 tanh network (targets +-1, SGD 0.5, one pattern per step); ``stuck``: the
    output unit of segment c starts with a bias of 8, saturated at +1, where digit 2 alone wants -1 (a bad init:
    its error reaches no weight). Not stuck: the healthy twin, targets at +-0.65 inside tanh's range (LeCun et al.
    1998). Returns the mean squared error over the ten digits, the weights, the guard."""
    keras.utils.set_random_seed(1)
    x = np.array([[1.0 if (d >> b) & 1 else -1.0 for b in (3, 2, 1, 0)] for d in range(10)], "float32")
    y = np.array([[1.0 if c == "1" else -1.0 for c in SEGMENTS[d]] for d in range(10)], "float32")
    bias = np.zeros(7, "float32")
    if stuck:
        bias[2] = 8.0
    else:
        y = 0.65 * y
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(20, activation="tanh"),
                              keras.layers.Dense(7, activation="tanh",
                                                 bias_initializer=keras.initializers.Constant(bias))])
    model.compile(loss="mse", optimizer=keras.optimizers.SGD(0.5))
    guard = tk.Guard(policy=policy) if policy is not None else None
    model.fit(x, y, epochs=epochs, batch_size=1, shuffle=True, verbose=0, callbacks=[guard] if guard else [])
    error = float(np.mean((model.predict(x, verbose=0) - y) ** 2))
    return error, [_values(v) for v in model.weights], guard


def test_only_units_that_can_saturate_are_scaled_to_the_bound_and_their_slots_reset():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, activation="tanh"),
                              keras.layers.Dense(3), keras.layers.Activation("tanh")])
    dense = model.layers[1]
    dense.kernel.assign(np.array([[4.0, 0.1, -2.0], [-4.0, 0.2, 0.0], [1.0, -0.3, 0.0], [0.0, 0.1, 0.0],
                                  [0.0, 0.0, 1.0]], "float32"))
    dense.bias.assign(np.array([1.0, 0.1, 0.0], "float32"))
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    optimizer.build(model.trainable_variables)
    for slot in optimizer.variables[1:]:
        slot.assign(np.ones(tuple(slot.shape), "float32"))
    kept = _values(dense.kernel)[:, 1].copy()
    done = shrink_saturated_layers(model, optimizer, (model.layers[2].name,))
    assert done == {"units": 2, "layers": [model.layers[2].name]}
    kernel, bias = _values(dense.kernel), _values(dense.bias)
    reach = np.abs(kernel).sum(axis=0) + np.abs(bias)
    assert reach[0] == pytest.approx(2.5) and reach[2] == pytest.approx(2.5)
    assert np.array_equal(kernel[:, 1], kept)
    momentum = next(s for s in optimizer.variables if tuple(s.shape) == (5, 3))
    assert np.all(_values(momentum)[:, [0, 2]] == 0) and np.all(_values(momentum)[:, 1] == 1)
    # a layer on unbounded inputs (the model's input) is left as it is, with the reason
    first = _values(model.layers[0].kernel)
    done = shrink_saturated_layers(model, optimizer, (model.layers[0].name,))
    assert done["units"] == 0 and "bounded" in done["not_applied"][0]
    assert np.array_equal(_values(model.layers[0].kernel), first)


def test_a_tanh_output_saturated_on_the_wrong_side_is_scaled_back_by_a_kept_trial():
    stuck, _, _ = _segments(None, stuck=True, epochs=110)
    repaired, _, guard = _segments("auto", stuck=True, epochs=110)
    started = next(a for a in guard.actions if a.kind == "shrink_saturated_output")
    trial = next(a for a in guard.actions if a.kind == "trial" and a.params["repair"] == "shrink_saturated_output")
    assert started.effect["units"] >= 1 and trial.effect["kept"] is True, trial.effect
    assert stuck > 0.05 and repaired < 0.1 * stuck


def test_a_healthy_tanh_network_is_not_touched():
    bare, weights, _ = _segments(None, stuck=False, epochs=60)
    guarded, guarded_weights, guard = _segments("auto", stuck=False, epochs=60)
    assert guard.actions == []
    assert all(np.array_equal(a, b) for a, b in zip(weights, guarded_weights)) and bare == guarded


def test_each_layer_is_renormalized_in_forward_order_on_the_batch():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(8, activation="sigmoid"),
                              keras.layers.Dense(8), keras.layers.Activation("sigmoid"), keras.layers.Dense(1)])
    x = np.random.default_rng(0).random((32, 1)).astype("float32")
    names = (model.layers[0].name, model.layers[2].name)
    done = renormalize_on_batch(model, keras.optimizers.SGD(0.1), names, x)
    assert done == {"units": 16, "layers": list(names)}
    first = x @ _values(model.layers[0].kernel) + _values(model.layers[0].bias)
    second = (1 / (1 + np.exp(-first))) @ _values(model.layers[1].kernel) + _values(model.layers[1].bias)
    for pre in (first, second):  # computed with the new weights, each on what the layers below now give
        assert np.allclose(pre.mean(0), 0, atol=1e-4) and np.allclose(pre.std(0, ddof=1), 1, atol=1e-3)
    before = [_values(v) for v in model.weights]
    done = renormalize_on_batch(model, keras.optimizers.SGD(0.1), names, None)  # no batch: refused, untouched
    assert done["units"] == 0 and "no training batch" in done["not_applied"][0]
    assert all(np.array_equal(a, _values(b)) for a, b in zip(before, model.weights))


def _sigmoid_stack(policy: str | None):
    """Seed 001, experiment 3 in Keras (tests/keras/_keras_seeds.py): four Dense(32, sigmoid) layers on x in
    [0, 1], SGD(0.1), batches of 20: the output collapses to the targets' mean by step 50. Returns the last epoch's
    loss and the guard."""
    keras.utils.set_random_seed(0)
    z, y = seed001_data(1.0)
    model = keras.Sequential([keras.Input((1,)), *[keras.layers.Dense(32, activation="sigmoid") for _ in range(4)],
                              keras.layers.Dense(1)])
    model.compile(loss="mean_squared_error", optimizer=keras.optimizers.SGD(learning_rate=0.1))
    guard = tk.Guard(policy=policy) if policy is not None else None
    history = model.fit(z, y, epochs=40, batch_size=20, shuffle=True, verbose=0, callbacks=[guard] if guard else [])
    return float(history.history["loss"][-1]), guard


def test_a_collapsed_sigmoid_stack_is_renormalized_and_the_trial_kept_or_rolled_back_on_its_loss():
    collapsed, _ = _sigmoid_stack(None)
    final, guard = _sigmoid_stack("auto")
    started = next(a for a in guard.actions if a.kind == "renormalize_saturating_layers")
    trial = next(a for a in guard.actions if a.kind == "trial" and a.params["repair"] == "renormalize_saturating_layers")
    assert len(started.params["modules"]) == 4 and "not applied" not in trial.effect["why"]
    assert math.isfinite(final) and collapsed > 0.08
    if trial.effect["kept"]:  # the stack learns again: far below the collapsed run (the mean of the targets)
        assert final < 0.1 * collapsed, trial.effect
    else:  # rolled back to the snapshot before the change: the run ends where the unguarded one does
        assert "did not fall" in trial.effect["why"] and final == pytest.approx(collapsed, rel=0.1)
