"""A trial whose change the adapter could not carry out ends at once, as "not applied" (issue 16): nothing was
changed, so nothing is rolled back and no training is thrown away; the repair is not proposed again."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from rich.console import Console

from trainguard.core.policies import Plan, Refusal, chain, clip_global_norm
from trainguard.core.policies.trial import Proposal, Repair, trials
from trainguard.core.stats import StepStats
from trainguard.io.runlog import read_runlog
from trainguard.report.console import print_run_summary

from _repair_runs import dead_hidden_relu, full_batch_run

torch.set_num_threads(1)


def _eps_repair(every: int) -> Repair:
    """Proposes epsilon 1e-3 at every ``every``-th step."""
    return Repair("adam_epsilon", lambda: None,
                  lambda stats, findings, plan, st: (Proposal("test", {"eps": 1e-3}, "fix") if stats.step % every == 9
                                                     else None, st),
                  lambda plan, params: plan._replace(adam_eps=params["eps"]))


def test_a_refused_order_ends_its_trial_at_once_unapplied_and_the_repair_is_not_proposed_again():
    policy = chain(clip_global_norm(5.0), trials(_eps_repair(every=10), history=8, window=20))
    state = policy.init()
    for step in range(10):
        plan, state = policy.update(StepStats(step=step, loss=1.0 / (step + 1)), (), Plan(), state)
    assert plan.adam_eps == 1e-3 and plan.actions[0].kind == "adam_epsilon"  # the trial started at step 9
    told, same = policy.refused((Refusal("agc_clipping", "not this trial's order"),), state)
    assert told == () and same == state  # another policy's refused order does not end the trial
    told, state = policy.refused((Refusal("adam_eps", "the optimizer has no eps"),), state)
    (verdict,) = told
    assert verdict.kind == "trial" and verdict.step == 9 and verdict.params["to_step"] == 9
    assert verdict.effect["applied"] is False and verdict.effect["kept"] is False
    assert "the optimizer has no eps" in verdict.effect["why"]
    plans = []
    for step in range(10, 40):  # proposed again at 19, 29, 39: not started
        plan, state = policy.update(StepStats(step=step, loss=1.0 / (step + 1)), (), Plan(), state)
        plans.append(plan)
    assert all(p.adam_eps is None and p.rollback is None and not p.actions for p in plans)
    assert plans[-1].clip_norm == 5.0


def test_a_redo_trial_the_torch_executor_cannot_carry_out_discards_no_training(tmp_path):
    # The Linear before the dead ReLU sits in a wrapper; 945 steps: past the end of a 500-step window.
    unguarded, _, _ = dead_hidden_relu(None, wrapped=True)
    guarded, guard, _ = dead_hidden_relu("auto", wrapped=True, log=str(tmp_path / "run.jsonl"))
    started = [a for a in guard.actions if a.kind == "recycle_dormant"]
    verdicts = [a for a in guard.actions if a.kind == "trial"]
    assert len(started) == 1 and len(verdicts) == 1  # tried once, not proposed again
    verdict = verdicts[0]
    assert verdict.params["repair"] == "recycle_dormant" and verdict.params["to_step"] == started[0].step
    assert verdict.effect["applied"] is False and "no Linear/Conv layer" in verdict.effect["why"]
    assert not any(a.kind in ("rollback", "skip_batches") for a in guard.actions)
    for a, b in zip(unguarded.state_dict().values(), guarded.state_dict().values()):
        assert torch.equal(a, b)  # nothing was thrown away
    logged = next(a for a in read_runlog(tmp_path / "run.jsonl").actions if a.kind == "trial")
    assert logged.effect["applied"] is False and logged.effect["why"] == verdict.effect["why"]
    console = Console(record=True, width=400)
    print_run_summary(read_runlog(tmp_path / "run.jsonl"), console)
    assert "applied=False" in console.export_text()


def test_a_redo_trial_the_keras_executor_cannot_carry_out_discards_no_training():
    keras = pytest.importorskip("keras")
    import trainguard.keras as tk

    def fit(policy):
        keras.utils.set_random_seed(0)
        # a Dropout between the Dense and its ReLU: ReDo finds no Dense/Conv right before the ReLU
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(8), keras.layers.Dropout(0.1),
                                  keras.layers.ReLU(), keras.layers.Dense(1)])
        hidden = model.layers[0]
        hidden.kernel.assign(-np.abs(np.asarray(keras.ops.convert_to_numpy(hidden.kernel))) - 0.1)  # all dead
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
        rng = np.random.default_rng(1)
        x = rng.uniform(1, 2, size=(256, 2)).astype("float32")
        y = (x[:, :1] - x[:, 1:]).astype("float32")
        callbacks = [tk.Guard(policy=policy)] if policy is not None else []
        model.fit(x, y, epochs=70, batch_size=32, verbose=0, shuffle=False, callbacks=callbacks)  # 560 steps
        return model, (callbacks[0] if callbacks else None)

    unguarded, _ = fit(None)
    guarded, guard = fit("auto")
    started = [a for a in guard.actions if a.kind == "recycle_dormant"]
    verdicts = [a for a in guard.actions if a.kind == "trial"]
    assert len(started) == 1 and len(verdicts) == 1
    assert verdicts[0].params["to_step"] == started[0].step and verdicts[0].effect["applied"] is False
    assert "no Dense/Conv layer right before the ReLU" in verdicts[0].effect["why"]
    for a, b in zip(unguarded.weights, guarded.weights):
        assert np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def _one_proposal(name: str, order: dict) -> Repair:
    """Proposes the standing ``order`` (Plan fields) once, at step 4."""
    return Repair(name, lambda: None,
                  lambda stats, findings, plan, st: (Proposal("test", dict(order), "fix") if stats.step == 4
                                                     else None, st),
                  lambda plan, params: plan._replace(**params))


def test_an_epsilon_for_an_optimizer_without_one_is_not_applied_on_torch():
    unguarded, _ = full_batch_run(40, None, momentum=0.9)
    epsilon_trial = trials(_one_proposal("adam_epsilon", {"adam_eps": 1e-3}), history=4, window=20)
    guarded, guard = full_batch_run(40, epsilon_trial, momentum=0.9)
    (verdict,) = [a for a in guard.actions if a.kind == "trial"]
    assert verdict.params["to_step"] == 4 and verdict.effect["applied"] is False
    assert "no eps" in verdict.effect["why"]
    for a, b in zip(unguarded.state_dict().values(), guarded.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("order, why", [({"adam_eps": 1e-3}, "no epsilon"),
                                        ({"batch_weight": (32, 1.0)}, "torch only")])
def test_an_order_the_keras_executor_cannot_carry_out_ends_its_trial_unapplied(order, why):
    keras = pytest.importorskip("keras")
    import trainguard.keras as tk

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(256, 8)).astype("float32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(1e-2), loss="mse")
    guard = tk.Guard(policy=trials(_one_proposal("test_repair", order), history=4, window=4))
    model.fit(x, x[:, :1], epochs=12, batch_size=256, verbose=0, callbacks=[guard])
    (verdict,) = [a for a in guard.actions if a.kind == "trial"]
    assert verdict.params["to_step"] == 4 and verdict.effect["applied"] is False and why in verdict.effect["why"]
