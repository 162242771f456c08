"""A small GPT trained far past its best step on a tiny text corpus: the validation loss falls, then climbs while
the training loss keeps falling.

Source: https://github.com/codetiger/ThiruvalluvarGPT/issues/4 ("Validation Loss"): "Is there any reason on why the
validation loss first decreased drastically and then started increasing?" The project trains a nanoGPT-style model
on the Thirukkural (1,330 couplets).
Answer (the author): "the dataset is too small for the model. If you train too much with training dataset, beyond a
point the validation data set does not fit well ... the model's optimal learning steps is around 1000 for this
dataset"; "this effect is called overfitting". The fixed twin stops at the best validation loss - Lightning's
``EarlyStopping(monitor="val_loss", patience=3)`` - and nothing else changes.

Here: a LightningModule with a 2-layer causal transformer (d=48, 4 heads, no dropout) on a 3,000-token training
stream and a 1,000-token validation stream of the same sparse first-order Markov "language", AdamW(lr=3e-3),
batch 16 x 32 tokens, validation every 25 steps, up to 500 steps; ``CSVLogger(save_dir=outdir)`` writes train_loss
every step and val_loss at every validation.
final_loss: the last validation loss. Measured (unguarded, one thread): faulty: val_loss best 2.17 at step 75,
3.27 at the end while the training loss fell to 0.89; fixed (stopped at step 150): 2.29.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._lightning_common import fit_on_cpu
from benchmarks.corpus.faulty._torch_common import tail_mean, token_corpus

CASE = Case(name="lightning_kural4_tiny_gpt_overfits", kind="faulty", cause="overfitting", framework="lightning",
            source="https://github.com/codetiger/ThiruvalluvarGPT/issues/4 (validation loss decreases, then increases)",
            symptom="val_loss falls then rises while the training loss keeps falling (tiny corpus, too many steps)",
            fix="stop at the best validation loss: EarlyStopping(monitor='val_loss', patience=3)")

VOCAB, SEQ, D, MAX_STEPS, VAL_EVERY = 40, 32, 48, 500, 25


class Windows(Dataset):
    """Random windows of a token stream (an endless sampler for training, fixed windows for validation)."""

    def __init__(self, stream: torch.Tensor, count: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.stream = stream
        self.starts = torch.randint(0, len(stream) - SEQ - 1, (count,), generator=gen).tolist()

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        window = self.stream[self.starts[i]:self.starts[i] + SEQ + 1]
        return window[:-1], window[1:]


def _module_class() -> type:
    import lightning.pytorch as pl

    class TinyGPT(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(VOCAB, D)
            self.pos = nn.Parameter(torch.zeros(SEQ, D))
            layer = nn.TransformerEncoderLayer(D, 4, 4 * D, dropout=0.0, batch_first=True)
            self.blocks = nn.TransformerEncoder(layer, 2)
            self.head = nn.Linear(D, VOCAB)
            self.register_buffer("causal", nn.Transformer.generate_square_subsequent_mask(SEQ))
            self.losses: list[float] = []
            self.val_losses: list[tuple[int, float]] = []

        def _loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            x, y = batch
            logits = self.head(self.blocks(self.embed(x) + self.pos, mask=self.causal, is_causal=True))
            return F.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
            loss = self._loss(batch)
            self.losses.append(loss.item())
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
            self.log("val_loss", self._loss(batch))

        def on_validation_epoch_end(self) -> None:
            if not self.trainer.sanity_checking:
                self.val_losses.append((self.global_step, float(self.trainer.callback_metrics["val_loss"])))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(self.parameters(), lr=3e-3)

    return TinyGPT


def run(ctx: RunContext) -> Outcome:
    from lightning.pytorch.callbacks import EarlyStopping

    seeded(0)
    stream = torch.from_numpy(token_corpus(4000, VOCAB, seed=1, order=1))
    train = DataLoader(Windows(stream[:3000], 16 * MAX_STEPS, seed=2), batch_size=16)
    valid = DataLoader(Windows(stream[3000:], 64, seed=3), batch_size=64)
    model = _module_class()()
    callbacks = ctx.lightning_callbacks()
    if ctx.fixed:
        callbacks.append(EarlyStopping(monitor="val_loss", patience=3))
    fit_on_cpu(ctx, model, train, valid, max_steps=MAX_STEPS, callbacks=callbacks, val_check_interval=VAL_EVERY,
               num_sanity_val_steps=0)
    best_step, best_val = min(model.val_losses, key=lambda sv: sv[1])
    return ctx.outcome(model.val_losses[-1][1], model=model, steps=len(model.losses), best_val_loss=best_val,
                       best_val_step=best_step, train_loss_end=tail_mean(model.losses))
