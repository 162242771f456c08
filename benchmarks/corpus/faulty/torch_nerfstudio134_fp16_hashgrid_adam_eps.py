"""An Instant-NGP field (multiresolution hash-grid encoding + small MLP, half-precision parameters) trained with
PyTorch's Adam at its default eps 1e-8: the training goes NaN; eps 1e-4 trains.

Source: https://github.com/nerfstudio-project/nerfstudio/pull/134 ("Bump instant-ngp optimizer eps for numerical
stability", merged, fixes issue #117 "output accumulation value is very negative"). The instant-ngp field's
parameters (tiny-cuda-nn hash grid and fully fused MLP) are float16 and are trained with ``torch.optim.Adam``
(lr 1e-2) at the default eps.
Symptom: the run goes NaN (at 91k steps in the PR's plot, ~82k in the issue); the PR: "note that the default eps
value of 1e-8 as a float16 is clipped to zero".
Fix (PR #134, configs/graph_instant_ngp.yaml): ``eps: 1e-4 # for float16 stability`` ("Have not been able to
produce NaNs with 1e-4"). The same PR also moves the colour sigmoid into the tcnn network; that is not a
numerical change and is not applied here.

Here: a 2-D hash grid (4 levels, 16..128 cells per side, 2^12 entries of 2 features per level, bilinear
interpolation, the instant-ngp spatial hash) and an MLP 8-32-3, all float16, fitting a synthetic RGB image
(the instant-ngp paper's gigapixel-image task, small); sigmoid and MSE in float32; Adam(lr=1e-2), 1,024 random
pixels a step, 300 steps.
Measured (unguarded, one thread, CPU): faulty: loss 0.173 at step 0, nan from step 1 on, final nan; fixed (eps
1e-4): 0.173 -> 0.0012 (mean of the last 10% of steps). On CPU the float16 update is computed in float16 with eps
rounded to 0, so the first step already divides 0/0 for the hash entries no sample touched (m = v = 0) and m/0
for 10,941 of the 12,322 touched entries (their squared gradient underflows in v): the whole table is non-finite
after step 0. The report's GPU run took ~90k steps to go NaN; this CPU re-creation does not reproduce that delay.
"""
from __future__ import annotations

import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._torch_common import tail_mean

CASE = Case(name="torch_nerfstudio134_fp16_hashgrid_adam_eps", kind="faulty", cause="adam_epsilon",
            framework="torch",
            source="https://github.com/nerfstudio-project/nerfstudio/pull/134 (instant-ngp: bump Adam eps for "
                   "float16 stability; fixes #117)",
            symptom="instant-ngp training goes NaN; Adam's default eps 1e-8 is 0 in float16",
            fix="Adam eps 1e-4 instead of the default 1e-8 (PR #134)")

LEVELS, TABLE_SIZE, FEATURES, STEPS, LR = 4, 2 ** 12, 2, 300, 1e-2
RESOLUTIONS = (16, 32, 64, 128)
HASH_PRIME = 2654435761  # instant-ngp's spatial hash: x * 1 xor y * 2654435761, modulo the table size


class HashGridField(nn.Module):
    """Multiresolution hash encoding of 2-D points followed by a small MLP; float16 parameters as tcnn keeps them."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter((torch.rand(LEVELS, TABLE_SIZE, FEATURES) * 2e-4 - 1e-4).half())
        self.mlp = nn.Sequential(nn.Linear(LEVELS * FEATURES, 32), nn.ReLU(), nn.Linear(32, 3)).half()

    def encode(self, points: torch.Tensor) -> torch.Tensor:
        features = []
        for level, resolution in enumerate(RESOLUTIONS):
            grid = points * resolution
            corner = grid.floor().long()
            frac = grid - corner
            level_features = 0
            for dx in (0, 1):
                for dy in (0, 1):
                    index = ((corner[:, 0] + dx) ^ ((corner[:, 1] + dy) * HASH_PRIME)) % TABLE_SIZE
                    weight = (frac[:, 0] if dx else 1 - frac[:, 0]) * (frac[:, 1] if dy else 1 - frac[:, 1])
                    level_features = level_features + self.table[level, index] * weight[:, None].half()
            features.append(level_features)
        return torch.cat(features, dim=1)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(self.encode(points)).float())


def target_image(points: torch.Tensor) -> torch.Tensor:
    """RGB of a synthetic image at points in [0, 1)^2: two gratings and a disc."""
    x, y = points[:, 0:1], points[:, 1:2]
    disc = ((x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.1).float()
    return torch.cat([0.5 + 0.5 * torch.sin(12 * x + 3 * y), 0.5 + 0.5 * torch.cos(36 * x * y), disc], dim=1)


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    model = HashGridField()
    opt = torch.optim.Adam(model.parameters(), lr=LR, eps=1e-4 if ctx.fixed else 1e-8)
    gen = torch.Generator().manual_seed(1)
    guard = ctx.torch_guard(model, opt)
    losses = []
    for step in range(STEPS):
        points = torch.rand(1024, 2, generator=gen)
        target = target_image(points)
        opt.zero_grad()
        loss = ((model(points) - target) ** 2).mean()
        loss.backward()
        ctx.torch_step(guard, opt, loss, inputs=points, targets=target)
        losses.append(loss.item())
        ctx.log_scalar(step, loss=losses[-1], lr=LR)
    ctx.close(guard)
    return ctx.outcome(tail_mean(losses), model=model, steps=STEPS, first_loss=losses[0])
