"""A LightningModule put in eval mode by its own code before training: Lightning does not switch it back, so the
whole fit runs with BatchNorm on its initial running statistics and Dropout off.

Source: https://github.com/Lightning-AI/pytorch-lightning/issues/20216 ("Switching into training mode in
training_step"): "training mode does not get switched on automatically in the training_step, so if the model is put
into eval mode accidentally by the user it stays this way" (v2.4; the docs were then updated to say so,
pull request #20716). Here the user's ``on_train_start`` hook takes a look at the untrained model's predictions
with ``self.eval()`` under ``torch.no_grad()`` and never calls ``self.train()``.
Fix: ``self.train()`` at the end of that hook (what the issue expected Lightning to do); nothing else changes.

Here: an MLP 20-128-128-128-5 with BatchNorm1d + ReLU + Dropout(0.2) blocks on tabular features of mixed scales
(standard deviations 1 to 50, as raw sensor columns), SGD(lr=0.05, momentum=0.9), batch 64, 300 steps, logged by
``CSVLogger(save_dir=outdir)`` every step.
Measured (unguarded, one thread): faulty nan (without normalization the raw columns blow the SGD steps up; the
module is still in eval mode at the end); fixed 0.30 (mean training loss over the last 10% of steps; ln 5 = 1.61).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._lightning_common import fit_on_cpu
from benchmarks.corpus.faulty._torch_common import tail_mean

CASE = Case(name="lightning_pl20216_eval_mode_stays", kind="faulty", cause="bn_inference_mode", framework="lightning",
            source="https://github.com/Lightning-AI/pytorch-lightning/issues/20216 (eval mode set by the user stays)",
            symptom="model left in eval mode by user code trains with BatchNorm running stats and no Dropout",
            fix="self.train() after the user's eval-mode look at the predictions in on_train_start")

CLASSES, STEPS = 5, 300


def _data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(6400, 6))
    x = latent @ rng.normal(size=(6, 20)) + 0.3 * rng.normal(size=(6400, 20))
    x = x * np.geomspace(1, 50, 20) + rng.uniform(-20, 20, 20)  # raw columns of very different scales
    y = (latent[:, :3] @ rng.normal(size=(3, CLASSES))).argmax(1)
    return x.astype(np.float32), y.astype(np.int64)


def _module_class() -> type:
    import lightning.pytorch as pl

    class Classifier(pl.LightningModule):
        def __init__(self, fixed: bool, x_probe: torch.Tensor) -> None:
            super().__init__()
            blocks: list[nn.Module] = []
            for n_in, n_out in ((20, 128), (128, 128), (128, 128)):
                blocks += [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.ReLU(), nn.Dropout(0.2)]
            self.net = nn.Sequential(*blocks, nn.Linear(128, CLASSES))
            self.fixed, self.x_probe, self.losses = fixed, x_probe, []

        def on_train_start(self) -> None:
            self.eval()  # a look at the untrained model's predictions
            with torch.no_grad():
                self.initial_spread = self.net(self.x_probe).std().item()
            if self.fixed:
                self.train()

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = nn.functional.cross_entropy(self.net(x), y)
            self.losses.append(loss.item())
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    return Classifier


def run(ctx: RunContext) -> Outcome:

    seeded(0)
    x, y = _data(seed=1)
    model = _module_class()(ctx.fixed, torch.from_numpy(x[:256]))
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=64, shuffle=True,
                        generator=torch.Generator().manual_seed(2))
    fit_on_cpu(ctx, model, loader, max_steps=STEPS)
    return ctx.outcome(tail_mean(model.losses), model=model, steps=len(model.losses),
                       trained_in_eval_mode=not model.training, trivial_loss=math.log(CLASSES))
