"""Census disaggregation with a per-pixel occupancy-rate network whose last layer is a ReLU: for some initial
weights it predicts 0 on every pixel, no gradient reaches any layer and the model never moves.

Source: https://github.com/jvargasmu/population_estimation/issues/68 ("Sometimes the initial solution predicts only
zeros (due to RELU activation)"): "Sometimes the initial solution predicts only zeros (due to RELU activation). And
hence, no gradients emerge. We should maybe change this to a softRelu/Softplus." The repository's ``PixScaleNet``
(pix_transform/pix_transform_net.py, December 2021): 1x1 convolutions 128-128-128 with ReLU over the covariate
rasters, then ``scale_layer = Conv2d(128, 1) -> ReLU`` gives a per-pixel occupancy rate; the population estimate is
buildings x rate, summed over each administrative region and fitted to the region's census count (Adam).
Fix (the issue's proposal, in the repository from commit 965b262, January 2022): ``nn.Softplus()`` in place of the
last ``nn.ReLU``; nothing else changes.

Here, as a LightningModule: 240 regions of 256 pixels, 5 non-negative covariate rasters per pixel (gamma-distributed,
raw as such rasters are), a building count per pixel, a true occupancy rate that depends on the covariates; census =
sum of buildings x rate per region. 200 regions train (batches of 4 regions, shuffled), 40 are held out; L1 loss
between predicted and census totals (in thousands of people), Adam(lr=1e-3), 600 steps, logged by
``CSVLogger(save_dir=outdir)`` every step. Torch seed 15 is one of the draws (9 of seeds 0-59) whose initial rate is
0 on every pixel.
Measured (unguarded, one thread, ~5.3 s a run; final_loss = L1 on the 40 held-out regions, thousands of people,
whose mean census is 2.23): faulty: the rate is 0 on 100% of the pixels at step 0 and at the end, the batch loss sits
at the census totals (2.27 at step 0, 2.24 over the last 10% of steps), final 2.23 (= predicting 0 everywhere);
fixed: 1.63 at step 0 -> 0.041 over the last 10% of steps, final 0.027.
"""
from __future__ import annotations


import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._lightning_common import fit_on_cpu
from benchmarks.corpus.faulty._torch_common import tail_mean

CASE = Case(name="lightning_popest68_relu_occrate_zero", kind="faulty", cause="dead_relu", framework="lightning",
            source="https://github.com/jvargasmu/population_estimation/issues/68 (ReLU occupancy-rate output)",
            symptom="the initial solution predicts only zeros (ReLU output) and no gradients emerge",
            fix="Softplus in place of the ReLU after the last 1x1 convolution (the issue's proposal, commit 965b262)")

REGIONS, TRAIN, PIXELS, CHANNELS, STEPS, INIT_SEED = 240, 200, 256, 5, 600, 15


def _data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    covariates = rng.gamma(2.0, 1.0, size=(REGIONS, CHANNELS, PIXELS, 1)).astype(np.float32)
    buildings = rng.poisson(np.exp(0.3 * covariates[:, 0] - 0.2 * covariates[:, 1] + 1.0)).astype(np.float32)
    logit = 0.5 * covariates[:, 2] - 0.4 * covariates[:, 3] + 0.3 * covariates[:, 4]
    rate = np.log1p(np.exp(logit)) + 1.0  # people per building
    census = (buildings * rate).sum(axis=(1, 2)) / 1000.0  # thousands of people per region
    return covariates, buildings[:, None], census.astype(np.float32)


def _module_class() -> type:
    import lightning.pytorch as pl

    class PixScaleNet(pl.LightningModule):
        def __init__(self, fixed: bool) -> None:
            super().__init__()
            self.scalenet = nn.Sequential(nn.Conv2d(CHANNELS, 128, 1), nn.ReLU(), nn.Conv2d(128, 128, 1), nn.ReLU(),
                                          nn.Conv2d(128, 128, 1), nn.ReLU())
            self.scale_layer = nn.Sequential(nn.Conv2d(128, 1, 1), nn.Softplus() if fixed else nn.ReLU())
            self.losses: list[float] = []

        def forward(self, covariates: torch.Tensor, buildings: torch.Tensor) -> torch.Tensor:
            rate = self.scale_layer(self.scalenet(covariates))
            return (buildings * rate).sum(dim=(1, 2, 3)) / 1000.0

        def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
            covariates, buildings, census = batch
            loss = nn.functional.l1_loss(self(covariates, buildings), census)
            self.losses.append(loss.item())
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    return PixScaleNet


def run(ctx: RunContext) -> Outcome:

    covariates, buildings, census = (torch.from_numpy(a) for a in _data(seed=1))
    seeded(INIT_SEED)
    model = _module_class()(ctx.fixed)
    with torch.no_grad():
        initial_active = float((model.scale_layer(model.scalenet(covariates[:TRAIN])) > 0).float().mean())
    loader = DataLoader(TensorDataset(covariates[:TRAIN], buildings[:TRAIN], census[:TRAIN]), batch_size=4,
                        shuffle=True, generator=torch.Generator().manual_seed(2))
    fit_on_cpu(ctx, model, loader, max_steps=STEPS)
    model.eval()
    with torch.no_grad():
        held_out = float(nn.functional.l1_loss(model(covariates[TRAIN:], buildings[TRAIN:]), census[TRAIN:]))
        final_active = float((model.scale_layer(model.scalenet(covariates[:TRAIN])) > 0).float().mean())
    return ctx.outcome(held_out, model=model, steps=len(model.losses), train_tail=tail_mean(model.losses),
                       initial_active_pixels=initial_active, final_active_pixels=final_active,
                       mean_census=float(census[TRAIN:].mean()))
