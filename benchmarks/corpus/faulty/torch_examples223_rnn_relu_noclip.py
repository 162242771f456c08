"""PyTorch's word-language-model example with ``--model RNN_RELU`` at its default lr 20: NaN losses at once.

Source: https://github.com/pytorch/examples/pull/223 ("[BUG] potential typo in default learning rate"): "running
RNN_RELU with defaults arguments produces nan losses immediately" (RNN_TANH plateaus at a loss of ~10). Accepted
answer (apaszke, maintainer): "I'd add gradient clipping. Exploding gradients are common in RNNs, and would happen
even with a smaller LR"; the example's ``--clip 0.25``.
The example trains an embedding -> RNN -> decoder language model with truncated BPTT (35 steps, batch 20), the
hidden state carried across batches and detached, hand-written SGD ``p.data.add_(p.grad, alpha=-lr)`` at lr 20,
divided by 4 after an epoch whose validation loss did not improve; embedding and decoder weights initialized
uniformly in +-0.1.
The fixed twin adds ``clip_grad_norm_(model.parameters(), 0.25)`` before the update; nothing else changes.

Here: 64-unit embedding and ReLU RNN over a 50-token vocabulary, a token stream from a sparse first-order Markov
chain (ln 50 = 3.91), 12 epochs of 25 BPTT windows.
Measured (unguarded, one thread): faulty: 3.91 -> nan within the first ~30 steps, final nan; fixed: 3.91 -> 2.46
(mean of the last 10% of steps).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._torch_common import tail_mean, token_corpus

CASE = Case(name="torch_examples223_rnn_relu_noclip", kind="faulty", cause="exploding_gradient",
            framework="torch",
            source="https://github.com/pytorch/examples/pull/223 (word_language_model RNN_RELU: nan losses)",
            symptom="RNN_RELU at the default lr 20 produces nan losses immediately",
            fix="clip_grad_norm_(model.parameters(), 0.25) before each update (maintainer's answer)")

VOCAB, HIDDEN, BPTT, BATCH, EPOCHS, LR = 50, 64, 35, 20, 12, 20.0


class RNNModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Embedding(VOCAB, HIDDEN)
        self.rnn = nn.RNN(HIDDEN, HIDDEN, nonlinearity="relu")
        self.decoder = nn.Linear(HIDDEN, VOCAB)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output, hidden = self.rnn(self.encoder(tokens), hidden)
        return self.decoder(output), hidden


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    stream = torch.from_numpy(token_corpus(20000, VOCAB, seed=1, order=1))
    train, valid = stream[:18000], stream[18000:]
    data = train[:len(train) // BATCH * BATCH].view(BATCH, -1).t().contiguous()  # the example's batchify
    model = RNNModel()
    lr = LR
    opt = torch.optim.SGD(model.parameters(), lr=lr)  # the example's p.data.add_(p.grad, alpha=-lr)
    criterion = nn.CrossEntropyLoss()
    guard = ctx.torch_guard(model, opt)
    losses, best_val = [], math.inf
    for _epoch in range(EPOCHS):
        hidden = torch.zeros(1, BATCH, HIDDEN)
        for i in range(0, data.size(0) - 1 - BPTT, BPTT):
            inputs, targets = data[i:i + BPTT], data[i + 1:i + 1 + BPTT]
            hidden = hidden.detach()
            opt.zero_grad()
            output, hidden = model(inputs, hidden)
            loss = criterion(output.view(-1, VOCAB), targets.reshape(-1))
            loss.backward()
            if ctx.fixed:
                nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            ctx.torch_step(guard, opt, loss, inputs=inputs, targets=targets)
            losses.append(loss.item())
            ctx.log_scalar(len(losses) - 1, loss=losses[-1], lr=lr)
        with torch.no_grad():
            output, _ = model(valid[:-1].view(-1, 1), torch.zeros(1, 1, HIDDEN))
            val_loss = criterion(output.view(-1, VOCAB), valid[1:]).item()
        if val_loss < best_val:
            best_val = val_loss
        else:  # the example anneals the learning rate when the validation loss stops improving
            lr /= 4.0
            for group in opt.param_groups:
                group["lr"] = lr
    ctx.close(guard)
    return ctx.outcome(tail_mean(losses), model=model, steps=len(losses), first_loss=losses[0],
                       uniform_loss=math.log(VOCAB))
