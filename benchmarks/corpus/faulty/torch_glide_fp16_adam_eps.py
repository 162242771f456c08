"""Fine-tuning a diffusion model in half precision with PyTorch's Adam: NaN after the first iteration.

Source: https://github.com/afiaka87/glide-finetune/issues/5 ("Training on half precision leads to nan values") and
its fix, pull request #6 ("Fixed half precision optimizer bug"). The reporter fine-tunes GLIDE with the model in
float16 and ``torch.optim.Adam`` at its default eps 1e-8.
Symptom: "after just the first iteration I was running into nan values ... my gradients and input values/images
were all normal but the adam optimizer ... produces nans probably because of a divide by 0"; eps 1e-8 is below
float16's smallest subnormal (6e-8) and rounds to 0, and squared gradients below ~1e-4 underflow in v.
Fix (PR #6): "setting the eps variable to 1e-4 instead of the default 1e-8. This is the only thing this pr does".

Here: a noise-prediction MLP 64-128-128-64 (SiLU) in float16 trained on the diffusion objective (predict the noise
added to a sample at a random noise level), MSE computed in float32, Adam(lr=1e-4), batch 32, 300 steps.
Measured (unguarded, one thread): faulty: loss 1.08 at step 0, nan from step 1 on, final nan; fixed (eps 1e-4):
1.08 -> 0.45 (mean of the last 10% of steps).
"""
from __future__ import annotations

import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._torch_common import tail_mean

CASE = Case(name="torch_glide_fp16_adam_eps", kind="faulty", cause="adam_epsilon", framework="torch",
            source="https://github.com/afiaka87/glide-finetune/issues/5 (fp16 training: nan after one iteration)",
            symptom="loss nan from the second iteration on, inputs and gradients normal",
            fix="Adam eps 1e-4 instead of the default 1e-8 (PR #6)")

DIM, STEPS = 64, 300


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    # samples from a fixed low-rank "data manifold", the thing the denoiser has to learn
    basis = torch.randn(8, DIM) / 8 ** 0.5
    model = nn.Sequential(nn.Linear(DIM, 128), nn.SiLU(), nn.Linear(128, 128), nn.SiLU(),
                          nn.Linear(128, DIM)).half()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, eps=1e-4 if ctx.fixed else 1e-8)
    gen = torch.Generator().manual_seed(1)
    guard = ctx.torch_guard(model, opt)
    losses = []
    for step in range(STEPS):
        x0 = torch.randn(32, 8, generator=gen) @ basis
        noise = torch.randn(32, DIM, generator=gen)
        level = torch.rand(32, 1, generator=gen)
        noisy = ((1 - level).sqrt() * x0 + level.sqrt() * noise).half()
        opt.zero_grad()
        loss = ((model(noisy).float() - noise) ** 2).mean()
        loss.backward()
        ctx.torch_step(guard, opt, loss, inputs=noisy, targets=noise)
        losses.append(loss.item())
        ctx.log_scalar(step, loss=losses[-1], lr=1e-4)
    ctx.close(guard)
    return ctx.outcome(tail_mean(losses), model=model, steps=STEPS, first_loss=losses[0])
