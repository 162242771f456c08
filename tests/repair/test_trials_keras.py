"""Trials on Keras (issue 16): the epsilon a trial raised is the optimizer's, and a failed trial's rollback puts
it back with the weights; an LR cut rides on the optimizer's own LR."""
from __future__ import annotations

import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import trainguard.keras as tk  # noqa: E402
from trainguard.core.policies.trial import Proposal, Repair, trials  # noqa: E402


def _repair(at: int) -> Repair:
    """Proposes epsilon 1e-3 once, at step ``at``."""
    return Repair("adam_epsilon", lambda: None,
                  lambda stats, findings, plan, st: (Proposal("test", {"eps": 1e-3}, "fix") if stats.step == at
                                                     else None, st),
                  lambda plan, params: plan._replace(adam_eps=params["eps"]))


def _fit(policy, epochs: int = 6):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x[:, :1] - x[:, 1:2]).astype("float32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-2, epsilon=1e-7), loss="mse")
    guard = tk.Guard(policy=policy)
    model.fit(x, y, epochs=epochs, batch_size=256, verbose=0, shuffle=False, callbacks=[guard])
    return model, guard


def test_a_failed_epsilon_trial_on_keras_is_rolled_back_with_the_optimizers_epsilon():
    # Full batch, a falling loss: epsilon 1e-3 (far above sqrt(v) ~ the gradients here) slows the fit, so the
    # loss cannot fall below its trend and the trial fails.
    model, guard = _fit(trials(_repair(2), history=2, window=2), epochs=12)
    started = next(a for a in guard.actions if a.kind == "adam_epsilon")
    verdict = next(a for a in guard.actions if a.kind == "trial")
    assert started.effect["eps_before"] == pytest.approx(1e-7) and started.effect["eps"] == pytest.approx(1e-3)
    assert verdict.effect["kept"] is False
    assert model.optimizer.epsilon == pytest.approx(1e-7)  # put back by the rollback
    assert all(math.isfinite(s.loss) for s in guard.history)


def _dead_hidden_model():
    """Dense(8, relu) whose units are all negative on positive inputs (a dead layer), then Dense(1)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)),
                              keras.layers.Dense(8, activation="relu", kernel_initializer="glorot_uniform"),
                              keras.layers.Dense(1)])
    hidden = model.layers[0]
    hidden.kernel.assign(-np.abs(np.asarray(keras.ops.convert_to_numpy(hidden.kernel))) - 0.1)
    return model


def test_a_wholly_dead_keras_relu_layer_is_recycled_from_its_own_initializer_and_its_slots_reset():
    from trainguard.adapters.keras.effector import recycle_dead_layer

    model = _dead_hidden_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    x = np.random.default_rng(0).uniform(1, 2, size=(32, 2)).astype("float32")
    model.fit(x, x[:, :1], epochs=1, verbose=0, batch_size=32)
    hidden, out = model.layers
    before = keras.ops.convert_to_numpy(hidden.kernel).copy()
    name = hidden.name
    assert recycle_dead_layer(model, model.optimizer, (name,), {name: 0.5}, seed=3)["units"] == 0
    done = recycle_dead_layer(model, model.optimizer, (name,), {name: 1.0}, seed=3)
    assert done == {"units": 8, "layers": [name]}
    kernel = keras.ops.convert_to_numpy(hidden.kernel)
    assert not np.allclose(kernel, before) and np.all(np.abs(kernel) <= np.sqrt(6 / (2 + 8)))  # Glorot's bound
    assert np.all(keras.ops.convert_to_numpy(out.kernel) == 0)
    slots = [v for v in model.optimizer.variables if v.path.split("/", 1)[-1].startswith(
        hidden.kernel.path.replace("/", "_") + "_")]
    assert slots and all(np.all(keras.ops.convert_to_numpy(v) == 0) for v in slots)


def test_a_dead_keras_relu_layer_is_recycled_by_a_kept_trial_under_auto():
    def fit(policy):
        model = _dead_hidden_model()
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
        rng = np.random.default_rng(1)
        x = rng.uniform(1, 2, size=(256, 2)).astype("float32")
        y = (x[:, :1] - x[:, 1:]).astype("float32")  # mean 0: the output bias alone learns nothing
        guard = tk.Guard(policy=policy)
        model.fit(x, y, epochs=70, batch_size=32, verbose=0, shuffle=False, callbacks=[guard])  # 560 steps
        return float(model.evaluate(x, y, verbose=0)), guard

    dead, _ = fit("observe")
    revived, guard = fit("auto")
    recycled = next(a for a in guard.actions if a.kind == "recycle_dormant")
    assert recycled.effect["units"] == 8
    trial = next(a for a in guard.actions if a.kind == "trial")
    assert trial.effect["kept"] is True and revived < 0.5 * dead
