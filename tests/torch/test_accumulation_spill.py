"""Gradient accumulation whose leftover batches spill into the next update (JoeyNMT PR 81), counted by the guard
without the loop's help: a real loop with the bug gets ``accumulation_spill`` and ``batch_size_dependent_loss``;
the PR's fix, ordinary accumulation (either ``zero_grad``) and the loops that look alike get nothing."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import trainguard
from trainguard.adapters.torch.backward_count import BackwardCounter
from trainguard.core.detector import replay
from trainguard.core.detectors.accumulation_spill import accumulation_spill
from trainguard.core.stats import StepStats
from trainguard.io.runlog import read_runlog

torch.set_num_threads(1)

MULTIPLIER, BATCHES, BATCH, EPOCHS = 4, 19, 8, 6  # 19 batches per epoch: 4 groups of 4 and a leftover of 3


def _data():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(BATCHES * BATCH, 8, generator=generator)
    return x, (x[:, 0] + x[:, 1] > 0).long()


def _joeynmt_loop(tmp_path, *, fixed=False, batches=BATCHES, set_to_none=True):
    """JoeyNMT's countdown: ``loss / batch_multiplier`` backward per batch, an update when the count reaches 0,
    the count restarted each epoch. ``fixed``: the PR closes the epoch's leftover group with its own divisor."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = _data()
    criterion = nn.CrossEntropyLoss()
    guard = trainguard.Guard(model, opt, policy="observe", log=tmp_path / "run.jsonl")
    for _epoch in range(EPOCHS):
        count = MULTIPLIER - 1
        for i in range(batches):
            xb, yb = x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH]
            multiplier, update = MULTIPLIER, count == 0
            if fixed and i == batches - 1 and not update:
                multiplier, update = MULTIPLIER - count, True
            loss = criterion(model(xb), yb)
            (loss / multiplier).backward()
            if update:
                guard.step(loss)
                opt.zero_grad(set_to_none=set_to_none)
            count = MULTIPLIER if update else count
            count -= 1
    causes = guard.diagnose()
    guard.close()
    log = read_runlog(tmp_path / "run.jsonl")
    return log, [f for f in log.findings if f.code == "accumulation_spill"], causes


def test_the_leftover_spill_is_counted_found_and_named(tmp_path):
    log, found, causes = _joeynmt_loop(tmp_path)
    counts = [s.backward_passes for s in log.steps]
    assert counts[:9] == [4, 4, 4, 4, 7, 4, 4, 4, 7]  # from the 2nd epoch on, 3 leftover + 4 in the first update
    assert len(found) == 1 and found[0].severity == trainguard.Severity.WARNING
    assert found[0].evidence["usual_backward_passes"] == 4 and found[0].evidence["larger_counts"] == [7, 7]
    assert found[0].evidence["steps"] == [4, 8] and found[0].evidence["period"] == 4
    assert causes and causes[0].code == "batch_size_dependent_loss" and causes[0].confidence >= 0.8


@pytest.mark.parametrize("set_to_none", [True, False])
def test_the_prs_fix_closes_the_group_and_nothing_is_found(tmp_path, set_to_none):
    log, found, causes = _joeynmt_loop(tmp_path, fixed=True, set_to_none=set_to_none)
    assert [s.backward_passes for s in log.steps][:6] == [4, 4, 4, 4, 3, 4]  # the leftover applied in its epoch
    assert found == [] and causes == []


@pytest.mark.parametrize("set_to_none", [True, False])
def test_plain_accumulation_is_nothing(tmp_path, set_to_none):
    log, found, causes = _joeynmt_loop(tmp_path, batches=16, set_to_none=set_to_none)  # 16 = 4 whole groups
    assert {s.backward_passes for s in log.steps} == {4}
    assert found == [] and causes == []


def test_the_counter_counts_passes_since_the_gradient_was_zeroed():
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    counter = BackwardCounter(model.parameters())
    x = torch.randn(8, 4)
    for _ in range(3):
        model(x).sum().backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)  # clipping runs no backward
    assert counter.take() == 3 and counter.take() is None  # no pass since: nothing to tell
    opt.step()
    opt.zero_grad(set_to_none=False)  # zeroed in place: the next pass starts again
    model(x).sum().backward()
    assert counter.take() == 1
    opt.step()  # a loop that skips zero_grad applies the old passes again: they count
    model(x).sum().backward()
    assert counter.take() == 2
    opt.zero_grad()
    torch.autograd.grad(model(x).sum(), list(model.parameters()))  # writes no .grad
    assert counter.take() is None
    counter.remove()
    model(x).sum().backward()
    assert counter.take() is None


def _stats(counts):
    return [StepStats(step=i, loss=1.0, grad_norm=1.0, backward_passes=c) for i, c in enumerate(counts)]


def test_a_group_smaller_than_usual_is_not_a_spill():
    # Lightning and the HF Trainer close an epoch's last, partial group early: 4, 4, 4, 3 per epoch.
    assert replay(accumulation_spill(), _stats([4, 4, 4, 3] * 20))[0] == []
    # Counts that never settle (a loop that never zeroes its gradients) give no usual count.
    assert replay(accumulation_spill(), _stats(range(1, 60)))[0] == []
    # One larger update (a warm-up pass before the first step) is no pattern.
    assert replay(accumulation_spill(), _stats([5] + [4] * 60))[0] == []


def test_the_count_round_trips_through_the_run_log():
    stats = StepStats(step=3, loss=0.5, backward_passes=7)
    assert StepStats.from_dict(stats.to_dict()).backward_passes == 7


def test_a_failing_count_never_breaks_the_backward(monkeypatch):
    model = nn.Linear(4, 1)
    counter = BackwardCounter(model.parameters())

    def broken(self, grad):
        raise RuntimeError("the counter's own bug")

    monkeypatch.setattr(BackwardCounter, "seen", broken)
    model(torch.randn(2, 4)).sum().backward()  # does not raise
    model(torch.randn(2, 4)).sum().backward()
    assert counter.take() is None and model.weight.grad is not None
