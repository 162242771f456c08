"""The PyTorch tutorial's character-level RNN classifier, trained on longer sequences without gradient clipping: the
gradients explode and the loss turns NaN.

Source: https://github.com/pytorch/pytorch/issues/2623 ("How to handle exploding/vanishing gradient in Pytorch and
negative loss values"). The reporter adapts the "classifying names with a character-level RNN" tutorial (its
``RNN``: ``hidden = i2h(cat(input, hidden))``, ``output = i2o(cat(input, hidden))``, no non-linearity on the
hidden state, SGD, NLL loss) to a data set of his own and hits "the problem of exploding / vanishing gradient as
described in" the forum thread "nan loss in rnn model" (discuss.pytorch.org/t/655); fix: "I used the solution given
there to clip the gradient in the train() function" (his remaining question, negative losses, comes from an
``nn.Softmax`` output fed to the NLL loss and is not re-created).
Symptom: the loss goes NaN during training.
Fix: ``torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)`` before ``optimizer.step()`` (0.25 is the clip of
PyTorch's own word_language_model example); nothing else changes.

Here: the tutorial's RNN (hidden 128, one-hot characters of a 30-letter alphabet) reading 30-character strings,
each drawn from one of 8 class-specific Markov chains over the letters; batches of 32, SGD lr 0.3, 800 steps.
The hidden state is a product of 30 linear maps, so once training pushes the recurrent block's spectral radius
above 1 the state, the output and the gradient grow geometrically with the sequence length.
Measured (unguarded, one thread, ~3 s CPU; final_loss = mean training NLL of the last 10% of steps, ln 8 = 2.08
for the trivial predictor): faulty: 2.09 at step 0, 1.89 at step 149, then 3,642 at step 150 and NaN from step 151
on, final nan; fixed (clipped at 0.25): 2.09 -> 1.64, the loss never above 3.7.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._torch_common import tail_mean

CASE = Case(name="torch_pt2623_char_rnn_no_clip", kind="faulty", cause="exploding_gradient", framework="torch",
            source="https://github.com/pytorch/pytorch/issues/2623 (char-RNN classifier: exploding gradient, "
                   "solved by clipping as in discuss.pytorch.org/t/655)",
            symptom="exploding gradient: the loss turns NaN while training the tutorial's char-RNN on own data",
            fix="clip_grad_norm_(parameters, 0.25) before optimizer.step()")

ALPHABET, HIDDEN, CLASSES, LENGTH, BATCH, STEPS, LR, CLIP = 30, 128, 8, 30, 32, 800, 0.3, 0.25


def make_strings(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Strings of LENGTH letters from one of CLASSES sparse Markov chains (the class to predict)."""
    rng = np.random.default_rng(seed)
    chains = rng.dirichlet(np.full(ALPHABET, 0.2), size=(CLASSES, ALPHABET)).cumsum(axis=2)
    y = rng.integers(0, CLASSES, n)
    x = np.empty((n, LENGTH), dtype=np.int64)
    x[:, 0] = rng.integers(0, ALPHABET, n)
    for t in range(1, LENGTH):
        u = rng.random(n)[:, None]
        x[:, t] = np.minimum((chains[y, x[:, t - 1]] < u).sum(axis=1), ALPHABET - 1)
    return x, y


class CharRNN(nn.Module):
    """The tutorial's RNN: the hidden state is a linear map of (letter, previous hidden state)."""

    def __init__(self) -> None:
        super().__init__()
        self.i2h = nn.Linear(ALPHABET + HIDDEN, HIDDEN)
        self.i2o = nn.Linear(ALPHABET + HIDDEN, CLASSES)

    def forward(self, letters: torch.Tensor) -> torch.Tensor:
        hidden = torch.zeros(letters.shape[0], HIDDEN)
        onehot = nn.functional.one_hot(letters, ALPHABET).float()
        for t in range(letters.shape[1]):
            combined = torch.cat([onehot[:, t], hidden], dim=1)
            hidden = self.i2h(combined)
            output = self.i2o(combined)
        return torch.log_softmax(output, dim=1)


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    x, y = make_strings(3000, seed=1)
    model = CharRNN()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    guard = ctx.torch_guard(model, opt)
    rng = np.random.default_rng(2)
    losses = []
    for step in range(STEPS):
        idx = rng.integers(0, len(x), BATCH)
        letters, labels = torch.from_numpy(x[idx]), torch.from_numpy(y[idx])
        opt.zero_grad()
        loss = nn.functional.nll_loss(model(letters), labels)
        loss.backward()
        if ctx.fixed:
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        ctx.torch_step(guard, opt, loss, inputs=letters, targets=labels)
        losses.append(loss.item())
        ctx.log_scalar(step, loss=losses[-1], lr=LR)
    ctx.close(guard)
    return ctx.outcome(tail_mean(losses), model=model, steps=STEPS, first_loss=float(np.mean(losses[:10])),
                       trivial_loss=math.log(CLASSES))
