"""The run log seen from the guards: a second guard on an open log, or a log path naming the user's own file,
fails at construction with one line, and leaves the model as it was (issue 13, F13 and F14)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import trainguard  # noqa: E402
from trainguard.io.runlog import read_runlog  # noqa: E402


def _model_and_optimizer():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    return model, torch.optim.SGD(model.parameters(), lr=0.05)


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def _train(guard, model, optimizer, steps):
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        guard.step(loss)
        optimizer.step()


def test_two_guards_on_one_log_path_second_fails_with_one_line(tmp_path):
    path = tmp_path / "run.jsonl"
    model, optimizer = _model_and_optimizer()
    first = trainguard.Guard(model, optimizer, policy="observe", log=path)
    _train(first, model, optimizer, 5)
    other_model, other_optimizer = _model_and_optimizer()
    hooks_before = _hooks(other_model)
    with pytest.raises(ValueError, match="another trainguard guard") as info:
        trainguard.Guard(other_model, other_optimizer, policy="observe", log=path)
    assert "\n" not in str(info.value)
    assert _hooks(other_model) == hooks_before
    _train(first, model, optimizer, 5)
    first.close()
    log = read_runlog(path)
    assert [s.step for s in log.steps] == list(range(10)) and log.problems == []


def test_guard_refuses_a_log_path_that_is_the_users_csv(tmp_path):
    csv = tmp_path / "metrics.csv"
    csv.write_text("step,loss\n0,1.0\n")
    model, optimizer = _model_and_optimizer()
    with pytest.raises(ValueError, match="something other than a trainguard run log"):
        trainguard.Guard(model, optimizer, log=csv)
    assert csv.read_text() == "step,loss\n0,1.0\n"
