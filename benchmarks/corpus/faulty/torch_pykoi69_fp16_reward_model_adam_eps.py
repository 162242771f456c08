"""A reward model fine-tuned with LoRA on a language model loaded in float16, AdamW at epsilon 1e-8: the
parameters are updated to NaN; epsilon 1e-7 fixes it.

Source: CambioML/pykoi#69, "Fix the issue of parameters updated as nan during reward model training."
(https://github.com/CambioML/pykoi/pull/69, commit 9f67660 of pykoi/rlhf/rw_finetuning.py). pykoi's
``RewardFinetuning`` loads the base model (dolly-v2-3b) with ``torch_dtype=torch.float16``, wraps it in LoRA
adapters (r 16, alpha 32, task SEQ_CLS) and trains it with the HF Trainer (AdamW, lr 1e-5, weight decay 0.01) on
the InstructGPT pairwise loss ``-logsigmoid(r_chosen - r_rejected)``. Symptom: the parameters become NaN during
reward model training. The PR's explanation: "Language model is loaded in torch.float16. Adam optimizer adds
epsilon to avoid zero denominator. Note, torch.float16 will round any number smaller than 6e-8 to 0." Fix: the
PR's own, ``adam_epsilon=1e-7`` (representable in float16) instead of the Trainer's 1e-8; nothing else changes.
Why at the first step: LoRA's B starts at 0, so A's gradient is exactly 0 (m = v = 0, and 0 / (0 + 0) is NaN),
and B's second moment ``0.001 g^2`` underflows to 0 in float16 for ``|g| < 7.7e-3`` (B's update is m / 0).

Here (the same loop the Trainer runs, written out): a 2-block causal language model (token and position
embeddings, a causal running-mean token mixer standing in for attention, GELU MLPs, LayerNorm; d 64, vocabulary
96, 16 tokens) whose "good" tokens share a direction in the embedding (a pretrained model knows them), frozen in
float16; LoRA (r 16, alpha 32, B = 0) on both MLP matrices of each block; the score head (``modules_to_save``)
trainable; reward = the score of the last token. Pairs: 16 random tokens each, the chosen one with 2-5 good
tokens placed in it. AdamW(lr 1e-5, weight_decay 0.01) with the Trainer's linear decay, batch 8, 1,500 steps.
final_loss = the pairwise loss on 512 held-out pairs (ln 2 = 0.693: no preference learned).
Measured (unguarded, one thread, ~8 s): faulty: step 0 loss 0.727, NaN from step 1 on, final nan; fixed
(epsilon 1e-7): mean loss 0.55 over the first 100 steps, ~0.3 over the last 100, final 0.33.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded

CASE = Case(name="torch_pykoi69_fp16_reward_model_adam_eps", kind="faulty", cause="adam_epsilon", framework="torch",
            source="https://github.com/CambioML/pykoi/pull/69 (Fix the issue of parameters updated as nan during "
                   "reward model training: the LM is loaded in float16, Adam's epsilon rounds to 0)",
            symptom="reward model parameters updated to nan from the first steps (float16 LoRA, AdamW eps 1e-8)",
            fix="adam_epsilon 1e-7 instead of the Trainer's 1e-8 (the PR's)")

VOCAB, LENGTH, WIDTH, GOOD, RANK, ALPHA = 96, 16, 64, 8, 16, 32
STEPS, BATCH, LR = 1500, 8, 1e-5


class _LoRALinear(nn.Module):
    """PEFT's LoRA layer: the frozen base plus ``(alpha / r) B A x``, A Kaiming-uniform, B zero."""

    def __init__(self, base: nn.Linear) -> None:
        super().__init__()
        self.base = base
        self.lora_A = nn.Parameter(torch.empty(RANK, base.in_features))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, RANK))
        self.scale = ALPHA / RANK

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scale


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(WIDTH)
        self.fc = nn.Linear(WIDTH, 4 * WIDTH)
        self.proj = nn.Linear(4 * WIDTH, WIDTH)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(1, h.shape[1] + 1, dtype=h.dtype)[:, None]
        h = h + torch.cumsum(h, dim=1) / positions  # each token sees the mean of the tokens up to it (causal)
        return h + self.proj(nn.functional.gelu(self.fc(self.ln(h))))


class _RewardModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.wte = nn.Embedding(VOCAB, WIDTH)
        self.wpe = nn.Embedding(LENGTH, WIDTH)
        nn.init.normal_(self.wte.weight, std=0.02)
        nn.init.normal_(self.wpe.weight, std=0.01)
        with torch.no_grad():  # what pretraining gave it: the good tokens share a direction
            direction = torch.randn(WIDTH)
            self.wte.weight[:GOOD] += 0.04 * direction / direction.norm()
        self.blocks = nn.Sequential(_Block(), _Block())
        self.ln_f = nn.LayerNorm(WIDTH)
        self.score = nn.Linear(WIDTH, 1, bias=False)
        nn.init.normal_(self.score.weight, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.wte(tokens) + self.wpe.weight[: tokens.shape[1]]
        return self.score(self.ln_f(self.blocks(h))[:, -1]).squeeze(-1)


def _pairs(rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    chosen = rng.integers(GOOD, VOCAB, (n, LENGTH))
    rejected = rng.integers(GOOD, VOCAB, (n, LENGTH))
    for i, k in enumerate(rng.integers(2, 6, n)):
        chosen[i, rng.choice(LENGTH, k, replace=False)] = rng.choice(GOOD, k)
    return torch.from_numpy(chosen), torch.from_numpy(rejected)


def _pairwise_loss(model: nn.Module, chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    return -nn.functional.logsigmoid((model(chosen) - model(rejected)).float()).mean()


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    model = _RewardModel()
    model.requires_grad_(False)
    for block in model.blocks:
        block.fc, block.proj = _LoRALinear(block.fc), _LoRALinear(block.proj)
    model.score.weight.requires_grad_(True)
    model = model.half()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR,
                            eps=1e-7 if ctx.fixed else 1e-8, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: max(0.0, 1.0 - step / STEPS))
    guard = ctx.torch_guard(model, opt)
    rng = np.random.default_rng(1)
    losses = []
    for step in range(STEPS):
        chosen, rejected = _pairs(rng, BATCH)
        opt.zero_grad()
        loss = _pairwise_loss(model, chosen, rejected)
        loss.backward()
        ctx.torch_step(guard, opt, loss)
        schedule.step()
        losses.append(loss.item())
        ctx.log_scalar(step, loss=losses[-1], lr=schedule.get_last_lr()[0])
    ctx.close(guard)
    held_out = _pairs(np.random.default_rng(2), 512)
    with torch.no_grad():
        final = _pairwise_loss(model, *held_out).item()
    return ctx.outcome(final, model=model, steps=STEPS, first_loss=losses[0], trivial_loss=math.log(2.0))
