"""Nothing lost, nothing changed behind the user's back (issue 13): the guard follows param groups added during
training, a rollback is all or nothing, nothing of trainguard stays on (or is pickled with) the user's model,
and bad arguments are one-line errors when the guard is built."""
from __future__ import annotations

import copy
import io
import weakref
import warnings

import pytest
import torch
from torch import nn

import trainguard
from trainguard import policies
from trainguard.core.policies import Policy, RollbackOrder

from _guard_runs import seed003_data, seed003_model, train


def _batch(step: int):
    generator = torch.Generator().manual_seed(step)
    x = torch.randn(16, 4, generator=generator)
    return x, x.sum(1, keepdim=True)


def test_a_param_group_added_later_is_watched_and_its_nan_gradient_skipped():
    torch.manual_seed(0)
    body, head = nn.Linear(4, 4), nn.Linear(4, 1)
    model = nn.Sequential(body, head)
    optimizer = torch.optim.SGD(body.parameters(), lr=0.01)
    guard = trainguard.Guard(model, optimizer)  # the default, "safe"
    for step in range(6):
        if step == 2:  # fine-tuning unfreezes the head
            optimizer.add_param_group({"params": list(head.parameters()), "lr": 0.01})
        x, y = _batch(step)
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        if step == 4:
            head.weight.grad[0, 0] = float("nan")  # in the new group only
        guard.step(loss)
    guard.close()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert [(a.kind, a.step) for a in guard.actions] == [("skip_step", 4)]
    assert guard.history[4].first_nonfinite_grad == "1.weight"


def _rollback_at(step: int) -> Policy:
    """Orders a rollback to the first snapshot (labelled 0) at ``step``."""
    def update(stats, findings, plan, state):
        if stats.step == step:
            plan = plan._replace(rollback=RollbackOrder(0, 0))
        return plan, state
    return Policy("rollback_at", lambda: (), update, frozenset({"snapshots"}))


def _run_with(policy, break_optimizer_load: bool):
    model, optimizer = seed003_model()
    if break_optimizer_load:
        def load_state_dict(state):
            raise RuntimeError("optimizer state does not load")
        optimizer.load_state_dict = load_state_dict
    x, y = seed003_data(standardized=True)
    guard = trainguard.Guard(model, optimizer, policy=policy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(model, optimizer, x, y, epochs=1, guard=guard, stop_on_nan=False,
              alter_batch=lambda step, xb: xb * float("nan") if step == 2 else xb)
    guard.close()
    return model, guard, [str(w.message) for w in caught]


def test_a_rollback_that_fails_half_way_leaves_model_and_optimizer_as_they_were():
    skip = policies.skip_if_non_finite(None)
    model, guard, caught = _run_with(policies.chain(skip, _rollback_at(5)), break_optimizer_load=True)
    reference, _, _ = _run_with(skip, break_optimizer_load=False)
    # The model was not restored while the optimizer could not be: training went on unchanged, bit for bit.
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters()))
    assert [f.where for f in guard.findings if f.code == "guard_internal_error"] == ["repairer"]
    assert any("optimizer state does not load" in message for message in caught)
    # The skip taken before the failure still reaches the user, with what was measured of its effect.
    assert [(a.kind, a.step) for a in guard.actions] == [("skip_step", 2)]


def test_a_snapshot_that_no_longer_fits_is_refused_before_anything_is_touched():
    from trainguard.adapters.torch.snapshot import restore_snapshot, take_snapshot

    model, optimizer = seed003_model()
    snap = take_snapshot(0, model, optimizer)
    extra = nn.Parameter(torch.zeros(3))
    optimizer.add_param_group({"params": [extra]})
    with torch.no_grad():
        model[0].weight.add_(1.0)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match="does not fit the optimizer"):
        restore_snapshot(snap, model, optimizer)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_nothing_of_trainguard_stays_on_the_model_between_steps():
    model, optimizer = seed003_model()
    x, y = seed003_data(standardized=True)
    guard = trainguard.Guard(model, optimizer, preset="full")  # the activation probe samples every step
    ema = copy.deepcopy(model)  # an EMA copy taken right after Guard()
    train(model, optimizer, x, y, epochs=1, guard=guard)
    buffer = io.BytesIO()
    torch.save(model, buffer)  # mid-run, as a checkpoint callback would
    assert b"trainguard" not in buffer.getvalue()
    for copied in (ema, copy.deepcopy(model)):
        assert not any(m._forward_hooks or m._forward_pre_hooks for m in copied.modules())
    assert any(s.activations for s in guard.history)  # the probe still saw every sampled forward
    guard.close()


@pytest.mark.parametrize("loss", ["abc", [1.0]])
def test_a_loss_that_is_no_number_is_a_one_line_type_error(loss):
    model, optimizer = seed003_model()
    guard = trainguard.Guard(model, optimizer)
    with pytest.raises(TypeError, match=r"^guard.step\(loss\) takes the loss tensor \(or a number\), got \w+$"):
        guard.step(loss)


def test_no_loss_and_nothing_accumulated_is_a_one_line_type_error():
    model, optimizer = seed003_model()
    guard = trainguard.Guard(model, optimizer)
    with pytest.raises(TypeError, match=r"^guard.step\(\) needs the step's loss \(or guard.accumulate\(loss\) for "
                                        r"each micro-batch first\)$"):
        guard.step(None)


@pytest.mark.parametrize("kwargs, message", [
    ({"detectors": "x"}, "detectors= takes a trainguard Detector"),
    ({"log": 123}, "log= takes the path of a run log"),
    ({"policy": 3}, "policy= takes 'observe', 'safe', 'auto'"),
    ({"exporters": print}, "exporters= takes a list of exporters"),
])
def test_bad_arguments_are_refused_when_the_guard_is_built(kwargs, message):
    model, optimizer = seed003_model()
    with pytest.raises(TypeError, match=message):
        trainguard.Guard(model, optimizer, **kwargs)


def test_a_guard_dropped_after_an_exception_leaves_no_forward_hook_behind():
    # The activation probe is a process-wide forward hook, installed before each sampled step's forward. A loop
    # that raises (no `with`, no close()) must not leave it on every later model's forward.
    import gc

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def loop_with_a_bug():
        guard = trainguard.Guard(model, optimizer, policy="observe")
        for _ in range(25):  # the next step (25) is sampled: the probe is installed for its forward
            loss = model(torch.randn(8, 4)).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            guard.step(loss)
        raise KeyError("the user's bug")

    with pytest.raises(KeyError):
        loop_with_a_bug()
    gc.collect()
    from trainguard.adapters.torch.hooks import ActivationProbe

    hooks = torch.nn.modules.module._global_forward_hooks.values()
    assert not [h for h in hooks if isinstance(getattr(h, "__self__", None), ActivationProbe)
                or isinstance(getattr(h, "probe", None), weakref.ref)]
