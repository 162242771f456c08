"""A 1-50-1 ReLU network fit to y = x^3 for x = 1..3999 on the raw values: it "could not learn on this type of data".

Source: https://discuss.pytorch.org/t/neural-network-could-not-learn-on-this-type-of-data-why/96648 (PyTorch
forums). The reporter trains ``Linear(1, 50) -> ReLU -> Linear(50, 1)`` with Adam(lr=1e-3) and MSELoss, full batch,
on input = 1..3999 and target = input**3 (up to 6.4e10).
Symptom: the loss stays astronomically large and the predictions never follow the curve.
Accepted answer (ptrblck): normalize the input (usually done anyway) and also the target, train on the normalized
values and un-normalize the predictions afterwards. The fixed twin standardizes input and target with their mean
and std; model, optimizer and epochs are unchanged. The target, at 6.4e10 against the input's 4e3, is the tensor
that is off scale by far.

final_loss is the training MSE over var(target) (the fraction of the variance left unexplained), the same measure
for both twins since their losses are in different units; mean over the last 10% of the 1,000 epochs.
Measured (unguarded, one thread): faulty 1.78 of the target variance left (raw loss 5.8e20: worse than
predicting the mean); fixed 0.00095.
"""
from __future__ import annotations

import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._torch_common import tail_mean

CASE = Case(name="torch_discuss96648_cubic_targets", kind="faulty", cause="unscaled_data", framework="torch",
            source="https://discuss.pytorch.org/t/neural-network-could-not-learn-on-this-type-of-data-why/96648",
            symptom="MSE stays ~1e20 on targets x^3 up to 6.4e10; predictions far from the curve",
            fix="standardize input and target (accepted answer), un-normalize predictions afterwards")

EPOCHS = 1000


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    inputs = torch.arange(1, 4000, dtype=torch.float32).unsqueeze(1)
    target = inputs ** 3
    target_var = float(target.var())
    if ctx.fixed:
        inputs = (inputs - inputs.mean()) / inputs.std()
        target = (target - target.mean()) / target.std()
    scale = 1.0 if ctx.fixed else target_var  # the loss in units of var(target), for both twins
    model = nn.Sequential(nn.Linear(1, 50), nn.ReLU(), nn.Linear(50, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.MSELoss()
    guard = ctx.torch_guard(model, opt)
    relative = []
    for epoch in range(EPOCHS):
        opt.zero_grad()
        loss = criterion(model(inputs), target)
        loss.backward()
        ctx.torch_step(guard, opt, loss, inputs=inputs, targets=target)
        relative.append(loss.item() / scale)
        ctx.log_scalar(epoch, loss=loss.item(), lr=1e-3)
    ctx.close(guard)
    return ctx.outcome(tail_mean(relative), model=model, steps=EPOCHS, raw_final_loss=loss.item())
