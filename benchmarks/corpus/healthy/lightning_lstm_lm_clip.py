"""An LSTM language model trained the way PyTorch's word_language_model example trains it: plain SGD at lr 20,
gradients clipped to norm 0.25, dropout 0.2, BPTT windows of 35, batch 20; here as a LightningModule with
``Trainer(gradient_clip_val=0.25)``.

Recipe: https://github.com/pytorch/examples/tree/main/word_language_model (``main.py`` defaults: ``--lr 20``,
``--clip 0.25``, ``--bptt 35``, ``--batch_size 20``, ``--dropout 0.2``; the Zaremba et al. 2014 setup), with
Lightning's gradient clipping (https://lightning.ai/docs/pytorch/stable/advanced/training_tricks.html). Here at
character level on English-like text from a small grammar (23 symbols), embedding 32, one LSTM layer of 128,
400 steps, ``CSVLogger(save_dir=outdir)`` every 5 steps. The clip is active on most steps early on; the large
learning rate is what the clipping makes safe.

Measured (unguarded, one thread, ~7 s CPU): training loss 2.74 over the first 10 steps (ln 23 = 3.14 uniform, 2.79
unigram) -> 0.33 (last 10%), the logged loss never above 0.58 after step 50; held-out loss 0.23 on 5,000
characters of the same grammar.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.healthy._common import grammar_text, tail_mean

CASE = Case(name="lightning_lstm_lm_clip", kind="healthy", cause=None, framework="lightning",
            source="https://github.com/pytorch/examples/tree/main/word_language_model (SGD lr 20, clip 0.25, "
                   "bptt 35, batch 20, dropout 0.2) with Lightning's Trainer(gradient_clip_val=0.25)",
            symptom="none: a large SGD learning rate made safe by clipping the gradient norm at 0.25")

BPTT, BATCH, STEPS, LR, CLIP = 35, 20, 400, 20.0, 0.25


class Windows(Dataset):
    def __init__(self, data: torch.Tensor, count: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.data, self.starts = data, torch.randint(0, len(data) - BPTT - 1, (count,), generator=gen)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        window = self.data[self.starts[i]:self.starts[i] + BPTT + 1]
        return window[:-1], window[1:]


def _module_class() -> type:
    import lightning.pytorch as pl

    class CharLSTM(pl.LightningModule):
        def __init__(self, vocab: int) -> None:
            super().__init__()
            self.vocab = vocab
            self.embed = nn.Embedding(vocab, 32)
            self.lstm = nn.LSTM(32, 128, batch_first=True)
            self.drop = nn.Dropout(0.2)
            self.out = nn.Linear(128, vocab)
            self.losses: list[float] = []

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            hidden, _ = self.lstm(self.drop(self.embed(tokens)))
            return self.out(self.drop(hidden))

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
            inputs, targets = batch
            loss = nn.functional.cross_entropy(self(inputs).reshape(-1, self.vocab), targets.reshape(-1))
            self.losses.append(loss.item())
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=LR)

    return CharLSTM


def run(ctx: RunContext) -> Outcome:
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger

    seeded(0)
    text = grammar_text(45000, seed=431)
    chars = sorted(set(text))
    data = torch.tensor([chars.index(c) for c in text])
    train, test = data[:40000], data[40000:]
    model = _module_class()(len(chars))
    loader = DataLoader(Windows(train, STEPS * BATCH, seed=432), batch_size=BATCH, shuffle=False)
    trainer = pl.Trainer(max_steps=STEPS, accelerator="cpu", devices=1, logger=CSVLogger(save_dir=ctx.outdir),
                         callbacks=ctx.lightning_callbacks(), log_every_n_steps=5, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, gradient_clip_val=CLIP)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        trainer.fit(model, loader)
    model.eval()
    with torch.no_grad():
        logits = model(test[:-1].unsqueeze(0))
        test_loss = nn.functional.cross_entropy(logits.reshape(-1, len(chars)), test[1:]).item()
    unigram = np.bincount(train.numpy(), minlength=len(chars)) / len(train)
    return ctx.outcome(test_loss, model=model, steps=len(model.losses), first_loss=float(np.mean(model.losses[:10])),
                       train_tail=tail_mean(model.losses), uniform_loss=math.log(len(chars)),
                       unigram_loss=float(-(unigram[unigram > 0] * np.log(unigram[unigram > 0])).sum()))
