"""An LSTM language model trained with Adam at learning rate 1.0: the loss does not go down over many epochs.

Source: https://github.com/rajveermalviya/language-modeling/issues/3 ("Adam's learning rate"). The repository
trains a word-level LSTM language model with the Adam optimizer and ``learning_rate: 1.0`` in its config.
Symptom: "the loss during training didn't really went down even after many epochs"; nothing diverges.
Fix (the reporter's, adopted by the maintainer): Adam with its default learning rate 0.001.

Here: embedding 32 -> LSTM 64 -> linear over a 40-word vocabulary, on a token stream from a sparse first-order
Markov chain (entropy well below ln 40 = 3.69), sequences of 16 tokens, batch 16, 800 steps.
Measured (unguarded, one thread): faulty: loss 3.69 -> 4.92 (mean of the last 10% of steps), no NaN; fixed:
1.88.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._torch_common import tail_mean, token_corpus

CASE = Case(name="torch_lstm_lm_adam_lr1", kind="faulty", cause="lr_too_high", framework="torch",
            source="https://github.com/rajveermalviya/language-modeling/issues/3 (Adam's learning rate 1.0)",
            symptom="training loss does not really go down over many epochs; no divergence",
            fix="Adam's default learning rate 0.001 instead of 1.0")

VOCAB, SEQ, BATCH, STEPS = 40, 16, 16, 800


class WordLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 32)
        self.lstm = nn.LSTM(32, 64, batch_first=True)
        self.out = nn.Linear(64, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.lstm(self.embed(tokens))
        return self.out(hidden)


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    stream = torch.from_numpy(token_corpus(20000, VOCAB, seed=1, order=1))
    lr = 0.001 if ctx.fixed else 1.0
    model = WordLM()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    criterion = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(2)
    guard = ctx.torch_guard(model, opt)
    losses = []
    for step in range(STEPS):
        starts = torch.randint(0, len(stream) - SEQ - 1, (BATCH,), generator=gen)
        window = torch.stack([stream[s:s + SEQ + 1] for s in starts.tolist()])
        inputs, targets = window[:, :-1], window[:, 1:]
        opt.zero_grad()
        loss = criterion(model(inputs).reshape(-1, VOCAB), targets.reshape(-1))
        loss.backward()
        ctx.torch_step(guard, opt, loss, inputs=inputs, targets=targets)
        losses.append(loss.item())
        ctx.log_scalar(step, loss=losses[-1], lr=lr)
    ctx.close(guard)
    return ctx.outcome(tail_mean(losses), model=model, steps=STEPS, first_loss=losses[0],
                       uniform_loss=math.log(VOCAB))
