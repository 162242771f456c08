"""Lightning ``Trainer(accumulate_grad_batches=4, gradient_clip_val=0.5)`` with ``ReduceLROnPlateau`` monitoring
the validation loss: a tabular regressor from micro-batches of 8.

Recipe: the Lightning Trainer flags for gradient accumulation and clipping
(https://lightning.ai/docs/pytorch/stable/advanced/training_tricks.html: ``accumulate_grad_batches``,
``gradient_clip_val`` with the default ``"norm"`` algorithm) and ``configure_optimizers`` returning a
``ReduceLROnPlateau`` with ``"monitor": "val_loss"`` (https://lightning.ai/docs/pytorch/stable/common/
lightning_module.html#configure-optimizers). An MLP 12-128-128-1 with SiLU, Adam 2e-3, MSE on a standardized
non-linear regression (2,400 training rows), micro-batch 8 (an effective batch of 32), 12 epochs, factor 0.5,
patience 2. Each micro-batch of 8 gives a noisy loss; the optimizer steps once per 4 of them.

Measured (unguarded, one thread, 6.5 s, 900 optimizer steps): logged micro-batch MSE 0.72 at step 19, then between
0.016 and 0.72 (median 0.155) for the rest of the run; validation MSE per epoch 0.314, 0.209, 0.197, 0.168, ...,
0.162, against 0.936 for the trivial predictor (the validation targets' variance); the LR was halved twice, to
5e-4.
"""
from __future__ import annotations

import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.healthy._common import regression_data

CASE = Case(name="lightning_accumulate_clip_plateau", kind="healthy", cause=None, framework="lightning",
            source="https://lightning.ai/docs/pytorch/stable/advanced/training_tricks.html (accumulate_grad_batches, "
                   "gradient_clip_val); ReduceLROnPlateau via configure_optimizers",
            symptom="none: 4 micro-batches of 8 per optimizer step, norms clipped at 0.5, LR halved at plateaus")

EPOCHS = 12


def run(ctx: RunContext) -> Outcome:
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    class Regressor(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(12, 128), nn.SiLU(), nn.Linear(128, 128), nn.SiLU(),
                                     nn.Linear(128, 1))

        def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
            x, y = batch
            self.log("val_loss", nn.functional.mse_loss(self.net(x), y))

        def configure_optimizers(self) -> dict:
            opt = torch.optim.Adam(self.parameters(), lr=2e-3)
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_loss"}}

    seeded(0)
    x, y = regression_data(3000, 12, seed=321)
    x, y = torch.from_numpy(x), torch.from_numpy(y)[:, None]
    train = torch.utils.data.TensorDataset(x[:2400], y[:2400])
    val = torch.utils.data.TensorDataset(x[2400:], y[2400:])
    loader = torch.utils.data.DataLoader(train, batch_size=8, shuffle=True,
                                         generator=torch.Generator().manual_seed(322))
    model = Regressor()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=EPOCHS, accumulate_grad_batches=4,
                        gradient_clip_val=0.5, logger=CSVLogger(save_dir=ctx.outdir), log_every_n_steps=20,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=ctx.lightning_callbacks())
    trainer.fit(model, loader, torch.utils.data.DataLoader(val, batch_size=600))
    with torch.no_grad():
        val_mse = nn.functional.mse_loss(model.net(x[2400:]), y[2400:]).item()
    return ctx.outcome(val_mse, model=model, steps=trainer.global_step, trivial_loss=float(y[2400:].var()),
                       final_lr=trainer.optimizers[0].param_groups[0]["lr"])
