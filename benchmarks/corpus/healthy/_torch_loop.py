"""The plain supervised PyTorch loop that several healthy recipes share: zero_grad, forward, backward, the step
through the run's context (guarded or not), the loss logged, the scheduler stepped per iteration."""
from __future__ import annotations

from typing import Any, Callable

import torch

from benchmarks.corpus.case import RunContext
from benchmarks.corpus.healthy._common import Batches


def train_supervised(ctx: RunContext, guard: Any, model: torch.nn.Module, opt: torch.optim.Optimizer,
                     loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], batches: Batches, steps: int,
                     sched: Any = None, log_lr: bool = True, first_step: int = 0) -> list[float]:
    """Trains ``steps`` steps; returns each step's loss. ``log_lr``: the native log has an ``lr`` column;
    ``first_step``: the native log's step of the first one (a loop that calls this once per epoch)."""
    losses: list[float] = []
    for step in range(first_step, first_step + steps):
        xb, yb = (torch.from_numpy(a) for a in batches.next())
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        ctx.torch_step(guard, opt, loss, inputs=xb, targets=yb)
        losses.append(loss.item())
        if log_lr:
            ctx.log_scalar(step, loss=losses[-1], lr=opt.param_groups[0]["lr"])
        else:
            ctx.log_scalar(step, loss=losses[-1])
        if sched is not None:
            sched.step()
    return losses
