"""SRCNN (9-1-5 convolutions) trained with plain SGD at lr 1e-4 as in the paper: the loss improves by a few hundredths
of a percent; a bigger learning rate trains.

Source: https://github.com/tegg89/SRCNN-Tensorflow/issues/24 ("Loss drop little"): "It seems that loss drop limit
during training, just 0.03% improve. How can we make loss drop more quickly?" The repository trains SRCNN (conv 9x9
64 -> ReLU -> conv 1x1 32 -> ReLU -> conv 5x5 1, MSE on luminance patches of bicubic-upscaled low-resolution
images, pixels in 0..1) with gradient descent at learning rate 1e-4.
Answers: "Maybe you should train more with a more aggressive learning rate"; "Use bigger learning rate for more
drastic changes." The fixed twin uses SGD at lr 0.1; nothing else changes.

Here: a LightningModule with that network (filters halved: 32 and 16) on 16x16 patches of synthetic smooth
textures (pixels 0..1), blurred by 2x down- and up-sampling, weights N(0, 0.001) as in the paper, batch 32,
400 steps, ``CSVLogger(save_dir=outdir)``.
Measured (unguarded, one thread): faulty: MSE 0.255 -> 0.221 (mean of the last 10% of steps); fixed: 0.0145;
the blurred input itself scores 0.0107.
"""
from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._lightning_common import fit_on_cpu
from benchmarks.corpus.faulty._torch_common import tail_mean

CASE = Case(name="lightning_srcnn24_sgd_lr_1e4", kind="faulty", cause="lr_too_low", framework="lightning",
            source="https://github.com/tegg89/SRCNN-Tensorflow/issues/24 (Loss drop little: 0.03% improvement)",
            symptom="training loss improves by a few hundredths of a percent with SGD at lr 1e-4",
            fix="a bigger SGD learning rate, 0.1 (the answers: a more aggressive / bigger learning rate)")

PATCH, STEPS = 16, 400


def _patches(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:PATCH, 0:PATCH] / PATCH
    hr = np.zeros((n, PATCH, PATCH))
    for _ in range(6):
        fx, fy, ph = rng.uniform(1, 6, (n, 1, 1)), rng.uniform(1, 6, (n, 1, 1)), rng.uniform(0, 6.3, (n, 1, 1))
        hr += rng.uniform(0.2, 1.0, (n, 1, 1)) * np.sin(2 * np.pi * (fx * xx + fy * yy) + ph)
    hr = (hr - hr.min()) / (hr.max() - hr.min())
    hr_t = torch.from_numpy(hr[:, None]).float()
    lr_t = F.interpolate(F.avg_pool2d(hr_t, 2), scale_factor=2, mode="bilinear", align_corners=False)
    return lr_t.numpy(), hr_t.numpy()


def _module_class() -> type:
    import lightning.pytorch as pl

    class SRCNN(pl.LightningModule):
        def __init__(self, lr: float) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(1, 32, 9, padding=4), nn.ReLU(), nn.Conv2d(32, 16, 1), nn.ReLU(),
                                     nn.Conv2d(16, 1, 5, padding=2))
            for m in self.net:
                if isinstance(m, nn.Conv2d):  # the paper: N(0, 0.001), zero biases
                    nn.init.normal_(m.weight, 0.0, 1e-3)
                    nn.init.zeros_(m.bias)
            self.lr, self.losses = lr, []

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
            low, high = batch
            loss = F.mse_loss(self.net(low), high)
            self.losses.append(loss.item())
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=self.lr)

    return SRCNN


def run(ctx: RunContext) -> Outcome:

    seeded(0)
    low, high = _patches(3200, seed=1)
    model = _module_class()(0.1 if ctx.fixed else 1e-4)
    loader = DataLoader(TensorDataset(torch.from_numpy(low), torch.from_numpy(high)), batch_size=32, shuffle=True,
                        generator=torch.Generator().manual_seed(2))
    fit_on_cpu(ctx, model, loader, max_steps=STEPS)
    blur_mse = float(((low - high) ** 2).mean())
    return ctx.outcome(tail_mean(model.losses), model=model, steps=len(model.losses), first_loss=model.losses[0],
                       blurred_input_mse=blur_mse)
