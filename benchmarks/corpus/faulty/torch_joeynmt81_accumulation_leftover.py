"""Gradient accumulation over ``batch_multiplier`` batches whose counter does not reach zero at the end of an epoch:
the leftover batches' gradients are never applied in their epoch and are added to the next epoch's first update.

Source: https://github.com/joeynmt/joeynmt/pull/81 ("Batch multiplier Bug fixes, Added "sum" as loss normalization
option"). JoeyNMT's training loop backpropagates each batch's loss divided by ``batch_multiplier`` and steps the
optimizer (then zeroes the gradients) when a countdown reaches 0; the countdown restarts every epoch.
Symptom (the PR): "For last batch in epoch batch_multiplier needs to be adjusted to fit the number of leftover
training examples ... Problem occurs if count can't be counted down to 0": the last update of every epoch is
missing and the first update of the next one applies (multiplier + leftover) batches' gradients at once, each
divided by the multiplier - a step 1.75x the usual size here, once per epoch.
Fix (the PR's): for the last batch of the epoch, divide by the number of batches actually accumulated and update.

Here: a 2-layer GRU sequence classifier (a stand-in for the NMT model's per-batch loss), 19 batches of 16 per
epoch, batch_multiplier 4 (4 full groups and a leftover of 3), Adam(lr=2e-3), 25 epochs.
final_loss: the mean per-batch training loss over the last 10% of batches (the quantity JoeyNMT logs), both twins.
Measured (unguarded, one thread): faulty 0.066 (100 updates); fixed 0.0022 (125 updates).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._torch_common import minibatches, tail_mean

CASE = Case(name="torch_joeynmt81_accumulation_leftover", kind="faulty", cause="batch_size_dependent_loss",
            framework="torch",
            source="https://github.com/joeynmt/joeynmt/pull/81 (batch_multiplier: leftover batches at epoch end)",
            symptom="the epoch's leftover accumulated batches spill into the next epoch's first update (1.75x step)",
            fix="for the last batch of an epoch, normalize by the batches actually accumulated and update")

BATCH, MULTIPLIER, EPOCHS, SEQ, VOCAB = 16, 4, 25, 12, 30


class GRUClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 32)
        self.gru = nn.GRU(32, 48, num_layers=2, batch_first=True)
        self.out = nn.Linear(48, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.gru(self.embed(tokens))
        return self.out(hidden[:, -1])


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, VOCAB, size=(19 * BATCH, SEQ))
    labels = ((tokens[:, :4] < 10).sum(1) >= 2).astype(np.int64)  # a pattern in the first tokens
    model = GRUClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    criterion = nn.CrossEntropyLoss()
    guard = ctx.torch_guard(model, opt)
    losses, update_no = [], 0
    per_epoch = len(tokens) // BATCH
    batches = minibatches([tokens, labels], BATCH, epochs=EPOCHS, seed=2)
    accumulated = []
    for _epoch in range(EPOCHS):
        count = MULTIPLIER - 1
        for i in range(per_epoch):
            xb, yb = next(batches)
            multiplier = MULTIPLIER
            update = count == 0
            if ctx.fixed and i == per_epoch - 1 and not update:  # the PR: close the leftover group
                multiplier, update = MULTIPLIER - count, True
            loss = criterion(model(xb), yb)
            (loss / multiplier).backward()
            accumulated.append(loss.item())
            losses.append(loss.item())
            if update:
                group_loss = torch.tensor(sum(accumulated) / len(accumulated))
                ctx.torch_step(guard, opt, group_loss, inputs=xb, targets=yb)
                opt.zero_grad()
                ctx.log_scalar(update_no, loss=group_loss.item(), lr=2e-3)
                update_no += 1
                accumulated = []
            count = MULTIPLIER if update else count
            count -= 1
    ctx.close(guard)
    return ctx.outcome(tail_mean(losses), model=model, steps=update_no)
