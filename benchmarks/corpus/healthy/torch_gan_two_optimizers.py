"""A GAN on a 2-D mixture of 4 Gaussians: two networks, two Adam optimizers, two guards ("gen", "disc").

Recipe: the PyTorch DCGAN tutorial's training loop (https://pytorch.org/tutorials/beginner/dcgan_faces_tutorial.html:
``BCELoss``, real label 1 / fake 0, the discriminator's loss summed over a real and a fake batch, the generator
trained with the non-saturating loss -log D(G(z)), ``Adam(betas=(0.5, 0.999))`` for each network; Goodfellow et
al. 2014, Radford et al. 2016 https://arxiv.org/abs/1511.06434), on the toy mixtures used to study mode coverage
(Metz et al., Unrolled GANs, 2017): 4 modes at (+-1, +-1), std 0.1. MLPs 8-128-128-2 and 2-128-128-1, lr 5e-4,
batch 128, 2,500 steps of each. Neither loss goes to zero: they oscillate around the equilibrium (2 ln 2 = 1.39 for
the discriminator's sum, ln 2 = 0.69 for the generator), and the generator's loss is high exactly when the
discriminator is winning.

Measured (unguarded, one thread, 6.5 s): discriminator loss 1.34 over the first 10 steps -> 1.36 over the last 10%
(equilibrium 1.39), generator loss 0.77 over the last 10%; of 4,000 generated points 94% lie within 3 std of a mode
and the four modes get 24.9 / 22.8 / 23.0 / 23.3% of them (all modes covered, none collapsed).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded

CASE = Case(name="torch_gan_two_optimizers", kind="healthy", cause=None, framework="torch",
            source="https://pytorch.org/tutorials/beginner/dcgan_faces_tutorial.html (training loop); "
                   "Metz et al. 2017 mixture-of-Gaussians toy",
            symptom="none: adversarial losses oscillate around ln 4 (D) and ln 2 (G) and never converge to 0")

STEPS, BATCH, NOISE_DIM, MODE_STD = 2500, 128, 8, 0.1
MODES = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=np.float32)


def real_batch(rng: np.random.Generator, n: int) -> torch.Tensor:
    centres = MODES[rng.integers(0, len(MODES), n)]
    return torch.from_numpy(centres + MODE_STD * rng.normal(size=(n, 2)).astype(np.float32))


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    rng = np.random.default_rng(41)
    gen = nn.Sequential(nn.Linear(NOISE_DIM, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 2))
    disc = nn.Sequential(nn.Linear(2, 128), nn.LeakyReLU(0.2), nn.Linear(128, 128), nn.LeakyReLU(0.2),
                         nn.Linear(128, 1), nn.Sigmoid())
    opt_g = torch.optim.Adam(gen.parameters(), lr=5e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=5e-4, betas=(0.5, 0.999))
    bce = nn.BCELoss()
    guard_d = ctx.torch_guard(disc, opt_d, name="disc")
    guard_g = ctx.torch_guard(gen, opt_g, name="gen")
    ones, zeros = torch.ones(BATCH, 1), torch.zeros(BATCH, 1)
    d_losses, g_losses = [], []
    for step in range(STEPS):
        real = real_batch(rng, BATCH)
        fake = gen(torch.randn(BATCH, NOISE_DIM))
        opt_d.zero_grad()
        loss_d = bce(disc(real), ones) + bce(disc(fake.detach()), zeros)
        loss_d.backward()
        ctx.torch_step(guard_d, opt_d, loss_d, inputs=real)
        opt_g.zero_grad()
        loss_g = bce(disc(fake), ones)
        loss_g.backward()
        ctx.torch_step(guard_g, opt_g, loss_g)
        d_losses.append(loss_d.item())
        g_losses.append(loss_g.item())
        ctx.log_scalar(step, loss_d=d_losses[-1], loss_g=g_losses[-1])
    ctx.close(guard_d)
    ctx.close(guard_g)
    with torch.no_grad():
        samples = gen(torch.randn(4000, NOISE_DIM)).numpy()
    distance = np.linalg.norm(samples[:, None, :] - MODES[None], axis=2)
    nearest, near = distance.argmin(axis=1), distance.min(axis=1) < 3 * MODE_STD
    coverage = np.bincount(nearest[near], minlength=len(MODES)) / len(samples)
    tail = STEPS // 10
    return ctx.outcome(float(np.mean(g_losses[-tail:])), model=gen, steps=STEPS,
                       disc_loss_tail=float(np.mean(d_losses[-tail:])), equilibrium_disc_loss=2 * math.log(2),
                       first_disc_loss=float(np.mean(d_losses[:10])), high_quality_fraction=float(near.mean()),
                       mode_shares=[round(float(c), 3) for c in coverage])
