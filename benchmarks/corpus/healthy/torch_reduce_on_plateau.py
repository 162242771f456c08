"""ReduceLROnPlateau on the validation loss: an MLP regressor with Adam, LR halved after 3 epochs without progress.

Recipe: ``torch.optim.lr_scheduler.ReduceLROnPlateau`` as its documentation uses it
(https://docs.pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.ReduceLROnPlateau.html:
``scheduler.step(val_loss)`` once per epoch after validation), mode "min", factor 0.5, patience 3, on an MLP
10-128-128-1 trained with Adam(3e-3), batch 32, MSE, on a standardized non-linear regression (2,000 training rows,
500 held out), 40 epochs. The LR halves several times as the validation loss levels off; the training loss per
batch is noisy (batch 32) and moves down in steps.

Measured (unguarded, one thread, 2.4 s, 2,480 steps): training MSE 1.01 over the first 10 batches -> 0.049 (last
10%); validation MSE 0.151 at the end, best 0.143, against 0.92 for the trivial predictor (the validation targets'
variance); the LR was halved 7 times, to 2.3e-5.
"""
from __future__ import annotations

import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.healthy._common import Batches, regression_data, tail_mean
from benchmarks.corpus.healthy._torch_loop import train_supervised

CASE = Case(name="torch_reduce_on_plateau", kind="healthy", cause=None, framework="torch",
            source="https://docs.pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.ReduceLROnPlateau.html",
            symptom="none: the LR halves at plateaus of the validation loss (3e-3 -> ~1e-4)")

EPOCHS, BATCH = 40, 32


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    x, y = regression_data(2500, 10, seed=31)
    x_train, y_train = x[:2000], y[:2000, None]
    x_val, y_val = torch.from_numpy(x[2000:]), torch.from_numpy(y[2000:, None])
    model = nn.Sequential(nn.Linear(10, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 1))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=3)
    batches = Batches((x_train, y_train), BATCH, seed=32)
    loss_fn = nn.MSELoss()
    guard = ctx.torch_guard(model, opt, scheduler=sched)
    losses, val_losses, lrs = [], [], []
    step = 0
    for epoch in range(EPOCHS):
        model.train()
        per_epoch = len(x_train) // BATCH
        losses += train_supervised(ctx, guard, model, opt, loss_fn, batches, per_epoch, first_step=step)
        step += per_epoch
        model.eval()
        with torch.no_grad():
            val_losses.append(loss_fn(model(x_val), y_val).item())
        sched.step(val_losses[-1])
        lrs.append(opt.param_groups[0]["lr"])
    ctx.close(guard)
    return ctx.outcome(val_losses[-1], model=model, steps=step, first_loss=sum(losses[:10]) / 10,
                       trivial_loss=float(y_val.var()), train_tail=tail_mean(losses), best_val=min(val_losses),
                       final_lr=lrs[-1], lr_reductions=sum(b < a for a, b in zip(lrs, lrs[1:])))
