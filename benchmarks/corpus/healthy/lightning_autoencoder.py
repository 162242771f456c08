"""Lightning's introductory ``LitAutoEncoder``: encoder to 3 numbers and back, MSE, Adam 1e-3, ``Trainer.fit``.

Recipe: the Lightning "Lightning in 15 minutes" introduction (https://lightning.ai/docs/pytorch/stable/starter/
introduction.html: ``encoder = Linear(28*28, 64) -> ReLU -> Linear(64, 3)``, ``decoder`` the mirror image,
``training_step`` returning ``F.mse_loss(x_hat, x)`` and calling ``self.log("train_loss", loss)``,
``configure_optimizers`` returning ``Adam(lr=1e-3)``, ``Trainer(...).fit``), on 16x16 images (256 pixels) of 10
noisy templates instead of MNIST, batch 64, 8 epochs (376 steps), logged to Lightning's ``CSVLogger`` every
10 steps. A 3-number bottleneck cannot reconstruct the pixel noise: the loss levels off well above 0.

Measured (unguarded, one thread, 3.3 s): logged training MSE 1.02 at step 9 -> 0.69 at step 369; held-out MSE 0.692
against 0.999 for the trivial model (the mean image) and 0.723 for the best linear 3-number code (PCA with 3
components), which the non-linear autoencoder beats.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.healthy._common import pattern_images

CASE = Case(name="lightning_autoencoder", kind="healthy", cause=None, framework="lightning",
            source="https://lightning.ai/docs/pytorch/stable/starter/introduction.html (LitAutoEncoder)",
            symptom="none: reconstruction MSE through a 3-number bottleneck levels off well above 0")

EPOCHS, PIXELS = 8, 256


def run(ctx: RunContext) -> Outcome:
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    class LitAutoEncoder(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(PIXELS, 64), nn.ReLU(), nn.Linear(64, 3))
            self.decoder = nn.Sequential(nn.Linear(3, 64), nn.ReLU(), nn.Linear(64, PIXELS))

        def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
            (x,) = batch
            loss = nn.functional.mse_loss(self.decoder(self.encoder(x)), x)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    seeded(0)
    x, _ = pattern_images(3500, 10, seed=301, noise=0.5)
    x = x.reshape(len(x), PIXELS)
    train = torch.utils.data.TensorDataset(torch.from_numpy(x[:3000]))
    loader = torch.utils.data.DataLoader(train, batch_size=64, shuffle=True,
                                         generator=torch.Generator().manual_seed(302))
    model = LitAutoEncoder()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=EPOCHS, logger=CSVLogger(save_dir=ctx.outdir),
                        log_every_n_steps=10, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=ctx.lightning_callbacks())
    trainer.fit(model, loader)
    test = torch.from_numpy(x[3000:])
    with torch.no_grad():
        test_mse = nn.functional.mse_loss(model.decoder(model.encoder(test)), test).item()
        centred = x[:3000] - x[:3000].mean(0)
        top3 = np.linalg.svd(centred, full_matrices=False)[2][:3]  # PCA with 3 components: the linear baseline
        t = x[3000:] - x[:3000].mean(0)
        pca_mse = float(np.mean((t - t @ top3.T @ top3) ** 2))
    return ctx.outcome(test_mse, model=model, steps=trainer.global_step,
                       trivial_loss=float(np.mean((x[3000:] - x[:3000].mean(0)) ** 2)), pca3_mse=pca_mse)
