"""The contract a repairer is called through: StepContext before the update, the skip decision (a bool, or a
device flag handed to a fused optimizer without a sync), after_update's actions logged and kept."""
from __future__ import annotations

import pytest
import torch

import trainguard
from trainguard.core.actions import Action
from trainguard.io.runlog import read_runlog

from _guard_runs import seed003_data, seed003_model, train


class SkipOddSteps:
    """Skips every odd step; reports each skip as an action. ``as_tensor`` answers with a device flag."""

    def __init__(self, as_tensor: bool):
        self.as_tensor = as_tensor
        self.contexts = []
        self.closed = False

    def before_update(self, ctx):
        self.contexts.append(ctx)
        apply = ctx.step % 2 == 0
        return torch.tensor(apply) if self.as_tensor else apply

    def after_update(self, stats, findings):
        if stats.applied:
            return []
        return [Action("skip_step", stats.step, None, {}, {"loss": stats.loss})]

    def close(self):
        self.closed = True


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_skipped_steps_leave_weights_and_optimizer_state_untouched(tmp_path, as_tensor, fused):
    model, _ = seed003_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)
    x, y = seed003_data(standardized=True)
    repairer = SkipOddSteps(as_tensor)
    guard = trainguard.Guard(model, optimizer, policy=repairer, log=tmp_path / "run.jsonl", fetch_every=3)
    snapshots = []
    for step in range(6):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x[:32]), y[:32])
        loss.backward()
        before = [p.detach().clone() for p in model.parameters()]
        guard.step(loss)
        after = [p.detach().clone() for p in model.parameters()]
        snapshots.append(all(torch.equal(a, b) for a, b in zip(before, after)))
        adam_step = optimizer.state[next(model.parameters())]["step"]
        assert float(adam_step) == step // 2 + 1
    guard.close()
    assert snapshots == [False, True] * 3
    assert [s.applied for s in guard.history] == [True, False] * 3
    assert [a.step for a in guard.actions] == [1, 3, 5]
    assert [a.step for a in read_runlog(tmp_path / "run.jsonl").actions] == [1, 3, 5]
    assert repairer.closed

    ctx = repairer.contexts[0]
    assert ctx.step == 0 and ctx.names == [name for name, _ in model.named_parameters()]
    assert ctx.loss.dim() == 0 and not ctx.loss.requires_grad
    assert ctx.grad_norm.item() == pytest.approx(guard.history[0].grad_norm, rel=1e-5)
    assert ctx.finite.dtype == torch.bool and bool(ctx.finite)


def test_context_flags_a_non_finite_step():
    model, optimizer = seed003_model()
    repairer = SkipOddSteps(as_tensor=False)
    guard = trainguard.Guard(model, optimizer, policy=repairer)
    x, y = seed003_data()
    train(model, optimizer, x, y, epochs=3, guard=guard)
    guard.close()
    last = repairer.contexts[-1]
    assert not bool(last.finite) and all(bool(c.finite) for c in repairer.contexts[:-1])
