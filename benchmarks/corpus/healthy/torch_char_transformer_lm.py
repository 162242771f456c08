"""A character-level transformer LM: linear warm-up + cosine decay, AdamW, ``clip_grad_norm_(1.0)``.

Recipe: Karpathy's nanoGPT / "Let's build GPT" char-level Shakespeare set-up (https://github.com/karpathy/nanoGPT,
``config/train_shakespeare_char.py`` and ``train.py``: pre-LayerNorm decoder blocks, AdamW with betas (0.9, 0.99),
weight decay 0.1, linear warm-up then cosine decay to lr/10, gradient clipping at 1.0), shrunk: 2 layers, width 64,
4 heads, context 32, batch 32, lr 2e-3, 60 warm-up steps, 400 steps, on English-like text from a small random
grammar (vocabulary of 23 characters, ~0.22 nats a character of real entropy: 2,058 equally likely sentences of
~35 characters).

Measured (unguarded, one thread, 8.1 s): training loss 3.16 over the first 10 steps (ln 23 = 3.14 uniform, 2.79
the unigram entropy) -> 1.82 at step 60 -> 0.51 at step 200 -> 0.34 (last 10%); held-out loss 0.34.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.healthy._common import grammar_text, tail_mean

CASE = Case(name="torch_char_transformer_lm", kind="healthy", cause=None, framework="torch",
            source="https://github.com/karpathy/nanoGPT (train_shakespeare_char config: AdamW, warm-up + cosine, "
                   "clip 1.0)",
            symptom="none: LR ramps 0 -> 2e-3 over 60 steps then decays by cosine; gradients clipped at norm 1")

STEPS, WARMUP, CONTEXT, BATCH, WIDTH, LR = 400, 60, 32, 32, 64, 2e-3


class CharLM(nn.Module):
    def __init__(self, vocab: int):
        super().__init__()
        self.tokens = nn.Embedding(vocab, WIDTH)
        self.positions = nn.Embedding(CONTEXT, WIDTH)
        layer = nn.TransformerEncoderLayer(WIDTH, nhead=4, dim_feedforward=4 * WIDTH, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(WIDTH)
        self.out = nn.Linear(WIDTH, vocab)
        self.register_buffer("causal", nn.Transformer.generate_square_subsequent_mask(CONTEXT))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h = self.tokens(idx) + self.positions(torch.arange(idx.shape[1]))
        return self.out(self.norm(self.blocks(h, mask=self.causal, is_causal=True)))


def lr_at(step: int) -> float:
    """nanoGPT's get_lr: linear warm-up, then cosine from LR down to LR / 10."""
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    progress = (step - WARMUP) / (STEPS - WARMUP)
    return LR / 10 + 0.5 * (1 + math.cos(math.pi * progress)) * (LR - LR / 10)


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    text = grammar_text(60_000, seed=131)
    chars = sorted(set(text))
    data = torch.tensor([chars.index(c) for c in text], dtype=torch.long)
    train, val = data[:54_000], data[54_000:]
    rng = np.random.default_rng(132)

    def batch(source: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.from_numpy(rng.integers(0, len(source) - CONTEXT - 1, n))
        idx = starts[:, None] + torch.arange(CONTEXT + 1)
        return source[idx[:, :-1]], source[idx[:, 1:]]

    model = CharLM(len(chars))
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.99))
    guard = ctx.torch_guard(model, opt)
    losses = []
    for step in range(STEPS):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        xb, yb = batch(train, BATCH)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xb).reshape(-1, len(chars)), yb.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        ctx.torch_step(guard, opt, loss, inputs=xb, targets=yb)
        losses.append(loss.item())
        ctx.log_scalar(step, loss=losses[-1], lr=opt.param_groups[0]["lr"])
    ctx.close(guard)
    model.eval()
    with torch.no_grad():
        xv, yv = batch(val, 256)
        val_loss = nn.functional.cross_entropy(model(xv).reshape(-1, len(chars)), yv.reshape(-1)).item()
    counts = torch.bincount(train, minlength=len(chars)).double()
    p = counts / counts.sum()
    unigram = float(-(p * p.log()).sum())
    return ctx.outcome(val_loss, model=model, steps=STEPS, first_loss=float(np.mean(losses[:10])),
                       trivial_loss=unigram, uniform_loss=math.log(len(chars)), train_tail=tail_mean(losses))
