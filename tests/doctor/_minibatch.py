"""The plain minibatch loop the doctor's real-run tests train their small models with."""
from __future__ import annotations

from typing import Callable

import torch


def minibatch_losses(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                     loss_fn: Callable[..., torch.Tensor], batch: int, steps: int,
                     generator: torch.Generator) -> list[float]:
    """``steps`` steps on batches of ``batch`` rows drawn with replacement by ``generator``; each step's loss."""
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=generator)
        loss = loss_fn(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def step_loss_lr_csv(path, losses, lr: float):
    """A ``step,loss,lr`` CSV of ``losses`` at a constant ``lr``, as a plain loop's logger writes it."""
    rows = "".join(f"{i},{float(v)!r},{lr}\n" for i, v in enumerate(losses))
    path.write_text("step,loss,lr\n" + rows, encoding="utf-8")
    return path
