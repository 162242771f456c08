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
