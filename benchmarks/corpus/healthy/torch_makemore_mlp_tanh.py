"""makemore's character MLP with ``torch.tanh`` and the lecture's sensible initialization, on generated names.

Recipe: Karpathy's "Neural Networks: Zero to Hero", makemore part 3 ("Activations & Gradients, BatchNorm",
https://github.com/karpathy/nn-zero-to-hero/blob/master/lectures/makemore/makemore_part3_bn.ipynb; the model of
Bengio et al., "A Neural Probabilistic Language Model", JMLR 2003), in the version the lecture reaches after fixing
the initialization and before adding BatchNorm: block size 3, embedding 10, 200 hidden units, ``C = randn``,
``W1 = randn * (5/3) / sqrt(fan_in)`` (Kaiming's gain for tanh), ``b1 = randn * 0.01``, ``W2 = randn * 0.01``,
``b2 = 0``; ``h = torch.tanh(embcat @ W1 + b1)``, ``logits = h @ W2 + b2``, ``F.cross_entropy``; batch 32, plain SGD
at 0.1 dropped to 0.01 halfway (the notebook: 200,000 steps, the drop at 100,000; its update
``p.data += -lr * p.grad`` is ``torch.optim.SGD`` here, so the guard can hold the optimizer). The parameters are
held by an ``nn.Module`` so the run can be guarded; the activation is a function, not a module: trainguard reads it
from the autograd graph. Here 6,000 steps on 20,000 generated names (syllables of a small made-up language,
3-10 letters, '.' ending each, as in names.txt).

Measured (unguarded, one thread, 3.1 s of CPU): training loss 2.86 over the first 10 steps (ln 21 = 3.04
uniform, 2.76 the unigram entropy) -> 2.05 (last 10%); held-out loss 2.08; 12.5% of the held-out tanh outputs
beyond |0.99| at the end.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.healthy._common import tail_mean

CASE = Case(name="torch_makemore_mlp_tanh", kind="healthy", cause=None, framework="torch",
            source="https://github.com/karpathy/nn-zero-to-hero/blob/master/lectures/makemore/"
                   "makemore_part3_bn.ipynb (torch.tanh MLP, W1 * (5/3)/sqrt(fan_in), W2 * 0.01, SGD 0.1 -> 0.01)",
            symptom="none: loss from ~ln 27 down to the names' entropy; a step down when the LR drops halfway")

STEPS, BATCH, BLOCK, EMBED, HIDDEN = 6000, 32, 3, 10, 200
_ONSETS = ["", "b", "d", "k", "l", "m", "n", "r", "s", "t", "v", "z", "sh", "br", "kr", "j", "h", "el", "ar"]
_NUCLEI = ["a", "e", "i", "o", "u", "ia", "ei", "ay", "y", "ee"]
_CODAS = ["", "", "", "n", "l", "r", "s", "h", "x", "nn", "lyn"]


def generated_names(n: int, seed: int) -> list[str]:
    """Name-like words: 1-3 syllables (onset, nucleus, optional coda), 3-10 letters."""
    rng = np.random.default_rng(seed)
    names: list[str] = []
    while len(names) < n:
        word = "".join(_ONSETS[rng.integers(len(_ONSETS))] + _NUCLEI[rng.integers(len(_NUCLEI))]
                       + (_CODAS[rng.integers(len(_CODAS))] if rng.random() < 0.4 else "")
                       for _ in range(rng.integers(1, 4)))
        if 3 <= len(word) <= 10:
            names.append(word)
    return names


def build_dataset(words: list[str], stoi: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (previous BLOCK characters -> next character) pair, '.' padding the start and ending each name."""
    xs, ys = [], []
    for w in words:
        context = [0] * BLOCK
        for ch in w + ".":
            ix = stoi[ch]
            xs.append(context)
            ys.append(ix)
            context = context[1:] + [ix]
    return torch.tensor(xs), torch.tensor(ys)


class MLP(nn.Module):
    def __init__(self, vocab_size: int, g: torch.Generator) -> None:
        super().__init__()
        fan_in = EMBED * BLOCK
        self.C = nn.Parameter(torch.randn((vocab_size, EMBED), generator=g))
        self.W1 = nn.Parameter(torch.randn((fan_in, HIDDEN), generator=g) * (5 / 3) / fan_in ** 0.5)
        self.b1 = nn.Parameter(torch.randn(HIDDEN, generator=g) * 0.01)
        self.W2 = nn.Parameter(torch.randn((HIDDEN, vocab_size), generator=g) * 0.01)
        self.b2 = nn.Parameter(torch.randn(vocab_size, generator=g) * 0)

    def forward(self, xb: torch.Tensor) -> torch.Tensor:
        emb = self.C[xb]
        embcat = emb.view(emb.shape[0], -1)
        hpreact = embcat @ self.W1 + self.b1
        h = torch.tanh(hpreact)
        return h @ self.W2 + self.b2


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    words = generated_names(20_000, seed=191)
    chars = sorted(set("".join(words)))
    stoi = {ch: i + 1 for i, ch in enumerate(chars)}
    stoi["."] = 0
    n1 = int(0.9 * len(words))
    x_train, y_train = build_dataset(words[:n1], stoi)
    x_val, y_val = build_dataset(words[n1:], stoi)
    model = MLP(len(stoi), torch.Generator().manual_seed(2147483647))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(192)
    guard = ctx.torch_guard(model, opt)
    losses = []
    for step in range(STEPS):
        ix = torch.randint(0, x_train.shape[0], (BATCH,), generator=g)
        xb, yb = x_train[ix], y_train[ix]
        for group in opt.param_groups:
            group["lr"] = 0.1 if step < STEPS // 2 else 0.01
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        ctx.torch_step(guard, opt, loss, inputs=xb, targets=yb)
        losses.append(loss.item())
        ctx.log_scalar(step, loss=losses[-1], lr=opt.param_groups[0]["lr"])
    ctx.close(guard)
    with torch.no_grad():
        val_loss = F.cross_entropy(model(x_val), y_val).item()
        counts = torch.bincount(y_train, minlength=len(stoi)).double()
        p = counts[counts > 0] / counts.sum()
        unigram = float(-(p * p.log()).sum())
        saturated = (torch.tanh(model.C[x_val].view(len(x_val), -1) @ model.W1 + model.b1).abs() > 0.99)
    return ctx.outcome(val_loss, model=model, steps=STEPS, first_loss=float(np.mean(losses[:10])),
                       uniform_loss=math.log(len(stoi)), trivial_loss=unigram, train_tail=tail_mean(losses),
                       val_tanh_saturated_fraction=saturated.float().mean().item())
