"""Acceptance 4: a rollback restores model, optimizer, LR scheduler and RNG states bit for bit, and the batches
skipped after it are listed in the run log."""
from __future__ import annotations

import random

import numpy as np
import torch
from _repair_runs import seed003
from torch import nn

from trainguard.adapters.torch.snapshot import SnapshotStore, restore_snapshot, take_snapshot
from trainguard.io.runlog import read_runlog


def _setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    return model, opt, sched


def _train(model, opt, sched, steps):
    """Every source of randomness a loop may use: torch (data, dropout), numpy, Python's random."""
    draws = []
    for _ in range(steps):
        x = torch.randn(16, 6) + float(np.random.standard_normal())
        y = x.sum(1, keepdim=True) * random.random()
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        sched.step()
        draws.append((torch.rand(1).item(), np.random.rand(), random.random()))
    return draws


def _state(model, opt, sched):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {k: {n: t.clone() if torch.is_tensor(t) else t for n, t in s.items()} for k, s in opt.state_dict()["state"].items()},
            [dict(g) for g in opt.state_dict()["param_groups"]], sched.state_dict())


def _assert_bitwise_equal(a, b):
    model_a, opt_a, groups_a, sched_a = a
    model_b, opt_b, groups_b, sched_b = b
    assert model_a.keys() == model_b.keys()
    assert all(torch.equal(model_a[k], model_b[k]) for k in model_a)  # incl. BatchNorm running stats
    assert opt_a.keys() == opt_b.keys()
    for k in opt_a:
        for name, value in opt_a[k].items():
            assert torch.equal(value, opt_b[k][name]) if torch.is_tensor(value) else value == opt_b[k][name]
    assert groups_a == groups_b and sched_a == sched_b


def test_restore_is_bit_exact_for_model_optimizer_scheduler_and_rng():
    np.random.seed(1)
    random.seed(2)
    model, opt, sched = _setup()
    _train(model, opt, sched, 5)
    snap = take_snapshot(5, model, opt, sched)
    first = _train(model, opt, sched, 7)
    after_first = _state(model, opt, sched)
    _train(model, opt, sched, 4)  # wander further
    restore_snapshot(snap, model, opt, sched)
    second = _train(model, opt, sched, 7)
    assert first == second  # the same dropout masks, data and numpy/python draws
    _assert_bitwise_equal(after_first, _state(model, opt, sched))


def test_a_snapshot_is_not_changed_by_training_after_a_restore():
    model, opt, sched = _setup()
    _train(model, opt, sched, 3)
    snap = take_snapshot(3, model, opt, sched)
    kept = {k: v.clone() for k, v in snap.optimizer["state"][0].items()}
    restore_snapshot(snap, model, opt, sched)
    _train(model, opt, sched, 3)
    assert all(torch.equal(kept[k], snap.optimizer["state"][0][k]) for k in kept)


def test_store_keeps_the_newest_k_and_counts_bytes():
    model, opt, sched = _setup()
    _train(model, opt, sched, 1)
    store = SnapshotStore(keep=2)
    for label in (0, 10, 20):
        store.add(take_snapshot(label, model, opt, sched))
    assert store.labels == [10, 20]
    params = sum(p.numel() * 4 for p in model.parameters())
    assert store.nbytes >= 2 * 3 * params  # weights + Adam's two moments, per snapshot
    store.forget_after(10)
    assert store.labels == [10]


def test_guard_rollback_restores_the_snapshot_and_logs_the_skipped_batches(tmp_path):
    states = {}

    def record(guard, model, opt):
        if guard.step_count <= 60:
            states[guard.step_count] = ([p.detach().clone() for p in model.parameters()], len(opt.state))

    torch.manual_seed(0)
    _, model, guard = seed003("auto", epochs=4, log=tmp_path / "run.jsonl", on_step=record)
    log = read_runlog(tmp_path / "run.jsonl")
    (rollback,) = [a for a in log.actions if a.kind == "rollback"]
    (skipped,) = [a for a in log.actions if a.kind == "skip_batches"]
    assert rollback.params["to_step"] == 0
    steps = skipped.params["steps"]
    assert steps == list(range(rollback.step + 1, rollback.step + 1 + rollback.params["skip_batches"]))
    not_applied = {s.step for s in log.steps if not s.applied}
    assert set(steps) <= not_applied
    # right after the rollback and through the skipped batches, the weights are the initial ones, bit for bit,
    # and SGD's momentum buffers are gone, as before the first update
    reference = [p.detach().clone() for p in seed003(None, epochs=0)[1].parameters()]
    for count in range(rollback.step + 1, steps[-1] + 2):
        weights, optimizer_states = states[count]
        assert all(torch.equal(a, b) for a, b in zip(weights, reference))
        assert optimizer_states == 0
    assert any(e.get("kind") == "snapshots" and e["bytes_peak"] > 0 for e in log.events)
