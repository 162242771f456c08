"""A reward model trained on answer pairs where a few answers are empty strings: the loss turns NaN.

Source: https://github.com/LAION-AI/Open-Assistant/pull/2438 ("Fix for Webgpt NaN loss", fixing issue #2439): "Webgpt
dataset was giving NaN loss/metrics during RM training. This was due to the presence of samples in the dataset
with empty string answers." The fix filters those samples out of the dataset; nothing else changes.
A pooled representation averaged over an empty answer is 0/0 = NaN; the pairwise ranking loss
-log sigmoid(r_chosen - r_rejected) of that pair is NaN, its gradient puts NaN into every weight, and all later
losses are NaN.

Here: token sequences (question + answer) from a 200-token vocabulary; the reward model embeds the tokens, averages
the answer's token vectors (masked mean), applies a 2-layer MLP and scores; the chosen answer of each pair draws
70% of its tokens from a "helpful" half of the vocabulary. 1,200 pairs, 0.5% of them with an empty answer, batch 16,
Adam(lr=1e-3), 3 epochs.
The final loss is the model's mean pairwise loss on 256 clean evaluation pairs drawn apart (no empty answer), the
same for every run: the training batches' own tail cannot score it, since the faulty data's empty answers make
their batches' loss NaN whatever the weights are (4 of them fall in the last 10% of steps).
Measured (unguarded, one thread): faulty: loss 0.71 at step 0, NaN at the first batch holding an empty answer (step
1) and ever after, final nan; fixed: 0.72 -> 0.47 (training loss, mean of the last 10% of steps).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._torch_common import minibatches

CASE = Case(name="torch_oasst2438_empty_answer_nan", kind="faulty", cause="bad_batch", framework="torch",
            source="https://github.com/LAION-AI/Open-Assistant/pull/2438 (Fix for Webgpt NaN loss: empty answers)",
            symptom="NaN loss during reward-model training, from the batches with empty-string answers",
            fix="drop the samples whose answer is empty (the PR's dataset filter)")

VOCAB, Q_LEN, A_LEN, PAIRS = 200, 12, 10, 1200


def _pairs(seed: int) -> tuple[np.ndarray, ...]:
    """Question tokens, chosen and rejected answers (0 = padding) with their lengths; 0.5% empty answers."""
    rng = np.random.default_rng(seed)
    q = rng.integers(1, VOCAB, size=(PAIRS, Q_LEN))
    good = rng.random((PAIRS, A_LEN)) < 0.7  # preferred answers use mostly the "helpful" half of the vocabulary
    chosen = np.where(good, rng.integers(1, VOCAB // 2, size=(PAIRS, A_LEN)), rng.integers(1, VOCAB, (PAIRS, A_LEN)))
    rejected = rng.integers(1, VOCAB, size=(PAIRS, A_LEN))
    len_c, len_r = rng.integers(3, A_LEN + 1, PAIRS), rng.integers(3, A_LEN + 1, PAIRS)
    empty = rng.choice(PAIRS, size=PAIRS // 200, replace=False)
    len_c[empty[::2]] = 0
    len_r[empty[1::2]] = 0
    return q, chosen, rejected, len_c, len_r


class RewardModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 32)
        self.head = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))

    def forward(self, question: torch.Tensor, answer: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        mask = (torch.arange(A_LEN) < length.unsqueeze(1)).float().unsqueeze(2)
        answer_vec = (self.embed(answer) * mask).sum(1) / mask.sum(1)  # an empty answer: 0 / 0
        return self.head(torch.cat([self.embed(question).mean(1), answer_vec], dim=1)).squeeze(1)


def _evaluation_loss(model: RewardModel) -> float:
    """The pairwise loss on clean pairs the run never trained on (NaN when the weights are)."""
    q, chosen, rejected, len_c, len_r = _pairs(seed=3)
    keep = ((len_c > 0) & (len_r > 0)).nonzero()[0][:256]
    batch = [torch.as_tensor(a[keep]) for a in (q, chosen, rejected, len_c, len_r)]
    model.eval()
    with torch.no_grad():
        margin = model(batch[0], batch[1], batch[3]) - model(batch[0], batch[2], batch[4])
        return float(-F.logsigmoid(margin).mean())


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    arrays = _pairs(seed=1)
    if ctx.fixed:
        keep = (arrays[3] > 0) & (arrays[4] > 0)
        arrays = tuple(a[keep] for a in arrays)
    model = RewardModel()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    guard = ctx.torch_guard(model, opt)
    losses = []
    for step, (q, chosen, rejected, len_c, len_r) in enumerate(minibatches(arrays, 16, epochs=3, seed=2)):
        opt.zero_grad()
        loss = -F.logsigmoid(model(q, chosen, len_c) - model(q, rejected, len_r)).mean()
        loss.backward()
        ctx.torch_step(guard, opt, loss, inputs=q, targets=len_c)
        losses.append(loss.item())
        ctx.log_scalar(step, loss=losses[-1], lr=1e-3)
    ctx.close(guard)
    first_nan = next((i for i, v in enumerate(losses) if not math.isfinite(v)), -1)
    return ctx.outcome(_evaluation_loss(model), model=model, steps=len(losses), first_loss=losses[0],
                       first_nan_step=first_nan)
