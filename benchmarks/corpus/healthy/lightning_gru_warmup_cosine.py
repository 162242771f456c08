"""Lightning with a per-step LR schedule from ``configure_optimizers``: a GRU text classifier, AdamW, linear
warm-up then cosine decay (``"interval": "step"``).

Recipe: Lightning's ``configure_optimizers`` returning an optimizer and an ``lr_scheduler`` config stepped every
batch (https://lightning.ai/docs/pytorch/stable/common/lightning_module.html#configure-optimizers:
``{"optimizer": ..., "lr_scheduler": {"scheduler": ..., "interval": "step"}}``), with the warm-up + cosine
schedule of transformers' ``get_cosine_schedule_with_warmup`` (written as a ``LambdaLR``). An embedding + 1-layer
GRU (hidden 64) + linear head on token sequences of length 40 (vocabulary 1,000, 4 classes carried by marker
tokens), lr 3e-3, weight decay 0.01, 60 warm-up steps, batch 32, 6 epochs (450 steps), validation every epoch.

Measured (unguarded, one thread, 6.8 s): logged training loss ~1.40 (ln 4 = 1.39) for the first 60 steps, 0.61 at
step 99, 0.105 at 149, single batches back up to 0.30-0.46 at steps 159-199, 0.008 at 449; validation loss per
epoch 1.13, 0.24, 0.11, 0.072, 0.067, 0.067, validation accuracy 0.975 (chance 0.25).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.healthy._common import token_sequences

CASE = Case(name="lightning_gru_warmup_cosine", kind="healthy", cause=None, framework="lightning",
            source="https://lightning.ai/docs/pytorch/stable/common/lightning_module.html#configure-optimizers "
                   "(interval: step); cosine schedule with warm-up",
            symptom="none: LR 0 -> 3e-3 over 60 steps then cosine to 0; a GRU loss with a plateau before it drops")

CLASSES, LENGTH, VOCAB, EPOCHS, WARMUP = 4, 40, 1000, 6, 60


def run(ctx: RunContext) -> Outcome:
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    total_steps = EPOCHS * math.ceil(2400 / 32)

    class GRUClassifier(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(VOCAB, 32)
            self.gru = nn.GRU(32, 64, batch_first=True)
            self.head = nn.Linear(64, CLASSES)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            _, h = self.gru(self.embed(ids))
            return self.head(h[-1])

        def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
            ids, y = batch
            loss = nn.functional.cross_entropy(self(ids), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
            ids, y = batch
            logits = self(ids)
            self.log("val_loss", nn.functional.cross_entropy(logits, y))
            self.log("val_acc", (logits.argmax(1) == y).float().mean())

        def configure_optimizers(self) -> dict:
            opt = torch.optim.AdamW(self.parameters(), lr=3e-3, weight_decay=0.01)

            def warmup_cosine(step: int) -> float:
                if step < WARMUP:
                    return (step + 1) / WARMUP
                return 0.5 * (1 + math.cos(math.pi * (step - WARMUP) / (total_steps - WARMUP)))

            sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    seeded(0)
    x, y = token_sequences(3000, LENGTH, VOCAB, seed=311, classes=CLASSES)
    train = torch.utils.data.TensorDataset(torch.from_numpy(x[:2400]), torch.from_numpy(y[:2400]))
    val = torch.utils.data.TensorDataset(torch.from_numpy(x[2400:]), torch.from_numpy(y[2400:]))
    loader = torch.utils.data.DataLoader(train, batch_size=32, shuffle=True,
                                         generator=torch.Generator().manual_seed(312))
    model = GRUClassifier()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=EPOCHS, logger=CSVLogger(save_dir=ctx.outdir),
                        log_every_n_steps=10, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=ctx.lightning_callbacks())
    trainer.fit(model, loader, torch.utils.data.DataLoader(val, batch_size=200))
    metrics = trainer.callback_metrics
    return ctx.outcome(float(metrics["val_loss"]), model=model, steps=trainer.global_step,
                       trivial_loss=math.log(CLASSES), val_accuracy=float(metrics["val_acc"]))
