"""Full-parameter fine-tuning of a language model with plain SGD (LOMO) at lr 5e-5: the loss does not go down.

Source: https://github.com/OpenLMLab/LOMO/issues/50 ("小学习率问题", small learning rate problem). The reporter
fine-tunes with LOMO - SGD without momentum, fused into the backward pass - at learning rate 5e-5 on ~10,000
training samples of a special format.
Symptom: "loss不降" - the loss does not decrease.
Answer (maintainer KaiLv69): "this is because the learning rate is too small; try raising it to the 1e-2 or 1e-3
level" (5e-5 is an Adam-sized rate; plain SGD needs far larger steps). The fixed twin uses SGD at lr 1e-2; nothing
else changes.

Here: a 2-layer causal transformer LM (d=48, 4 heads) over a 50-token vocabulary, trained on a token stream of a
sparse first-order Markov chain (the "special format"), sequences of 24, batch 16, plain SGD, 400 steps.
Measured (unguarded, one thread): faulty: 4.08 -> 4.07 (mean of the last 10% of steps; ln 50 = 3.91);
fixed: 3.31.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._torch_common import tail_mean, token_corpus

CASE = Case(name="torch_lomo50_sgd_lr_5e5", kind="faulty", cause="lr_too_low", framework="torch",
            source="https://github.com/OpenLMLab/LOMO/issues/50 (SGD fine-tuning at lr 5e-5: loss does not drop)",
            symptom="loss does not decrease with plain SGD at lr 5e-5",
            fix="SGD learning rate 1e-2 (maintainer: raise it to the 1e-2 .. 1e-3 level)")

VOCAB, SEQ, BATCH, STEPS, D = 50, 24, 16, 400, 48


class TinyLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, D)
        self.pos = nn.Parameter(torch.zeros(SEQ, D))
        layer = nn.TransformerEncoderLayer(D, 4, 4 * D, dropout=0.0, batch_first=True)
        self.blocks = nn.TransformerEncoder(layer, 2)
        self.head = nn.Linear(D, VOCAB)
        self.register_buffer("causal", nn.Transformer.generate_square_subsequent_mask(SEQ))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.embed(tokens) + self.pos, mask=self.causal, is_causal=True))


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    stream = torch.from_numpy(token_corpus(20000, VOCAB, seed=1, order=1))
    lr = 1e-2 if ctx.fixed else 5e-5
    model = TinyLM()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    criterion = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(2)
    guard = ctx.torch_guard(model, opt)
    losses = []
    for step in range(STEPS):
        starts = torch.randint(0, len(stream) - SEQ - 1, (BATCH,), generator=gen).tolist()
        window = torch.stack([stream[s:s + SEQ + 1] for s in starts])
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
