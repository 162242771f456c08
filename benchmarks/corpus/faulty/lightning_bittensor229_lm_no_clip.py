"""A small recurrent language model trained by Lightning without gradient clipping: after a while the loss jumps
from ~6 to hundreds and turns NaN.

Source: https://github.com/RaoFoundation/bittensor/pull/229 ("gradient clipping on miners", merged). Issue, in the
PR's words: "On certain architectures, typically smaller ones, loss explodes after some arbitrary number of
epochs. Goes from say, 6.282 to 298760397856.02222224555." Fix: "This PR adds gradient clipping flag and
implementation to miners to make sure miners don't hit the exploding loss." The PR does not name the architecture;
a loss of 6.28 is a next-token cross-entropy near the uniform level over ~530 tokens.
Fix here: Lightning's ``Trainer(gradient_clip_val=0.25)`` (clipping by global norm; 0.25 is the clip of PyTorch's
word_language_model example, which also trains its recurrent LMs with plain SGD at a large learning rate);
nothing else changes.

Here: a small recurrent LM (embedding 32, a recurrence h_t = W [e_t; h_(t-1)] + b of 64 units without a squashing
non-linearity, a linear read-out over 512 tokens) on a token stream from a sparse first-order Markov chain, BPTT
windows of 30 tokens, batch 32, SGD lr 6, 400 steps, ``CSVLogger(save_dir=outdir)`` every step. The state is a
product of 30 linear maps: once training pushes the recurrent block's spectral radius above 1, the state and the
gradient grow geometrically along the window.
Measured (unguarded, one thread, ~5-7 s CPU; final_loss = mean training cross-entropy of the last 10% of steps,
ln 512 = 6.24): faulty: 6.28 -> 5.7 by step 56, then 204 at step 61 (gradient norm ~0.6 -> 4.2e3) and NaN from
step 62 on, final nan; fixed (clipped): 6.28 -> 5.17, never above its first loss.
"""
from __future__ import annotations


import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._lightning_common import fit_on_cpu
from benchmarks.corpus.faulty._torch_common import tail_mean, token_corpus

CASE = Case(name="lightning_bittensor229_lm_no_clip", kind="faulty", cause="exploding_gradient",
            framework="lightning",
            source="https://github.com/RaoFoundation/bittensor/pull/229 (loss explodes on small architectures; "
                   "gradient clipping added)",
            symptom="after some epochs the LM loss explodes from ~6.3 to ~3e11",
            fix="gradient clipping: Trainer(gradient_clip_val=0.25)")

VOCAB, EMBED, HIDDEN, WINDOW, BATCH, STEPS, LR, CLIP = 512, 32, 64, 30, 32, 400, 6.0, 0.25


class Windows(Dataset):
    """Random BPTT windows of the stream (input, next tokens), drawn from a fixed seed."""

    def __init__(self, stream: torch.Tensor, count: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.stream, self.starts = stream, torch.randint(0, len(stream) - WINDOW - 1, (count,), generator=gen)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        window = self.stream[self.starts[i]:self.starts[i] + WINDOW + 1]
        return window[:-1], window[1:]


def _module_class() -> type:
    import lightning.pytorch as pl

    class RecurrentLM(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(VOCAB, EMBED)
            self.recur = nn.Linear(EMBED + HIDDEN, HIDDEN)
            self.out = nn.Linear(HIDDEN, VOCAB)
            self.losses: list[float] = []

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            embedded = self.embed(tokens)
            state = torch.zeros(tokens.shape[0], HIDDEN)
            states = []
            for t in range(tokens.shape[1]):
                state = self.recur(torch.cat([embedded[:, t], state], dim=1))
                states.append(state)
            return self.out(torch.stack(states, dim=1))

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
            inputs, targets = batch
            loss = nn.functional.cross_entropy(self(inputs).reshape(-1, VOCAB), targets.reshape(-1))
            self.losses.append(loss.item())
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=LR)

    return RecurrentLM


def run(ctx: RunContext) -> Outcome:

    seeded(0)
    stream = torch.from_numpy(token_corpus(20000, VOCAB, seed=1, order=1))
    model = _module_class()()
    loader = DataLoader(Windows(stream, STEPS * BATCH, seed=2), batch_size=BATCH, shuffle=False)
    fit_on_cpu(ctx, model, loader, max_steps=STEPS, gradient_clip_val=CLIP if ctx.fixed else None)
    return ctx.outcome(tail_mean(model.losses), model=model, steps=len(model.losses),
                       first_loss=float(np.mean(model.losses[:10])), uniform_loss=float(np.log(VOCAB)))
