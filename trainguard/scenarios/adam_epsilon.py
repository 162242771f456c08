"""Seed 002: Adam with a tiny epsilon, trained to a near-zero loss, blows up when the data shift.

The user's network trained well for 200k batches, then its loss grew and kept growing, every time from the same
point. The accepted answer: near the optimum Adam's second-moment estimate v becomes very small; when the
gradients grow again, m (beta1 = 0.9) reacts ten times faster than v (beta2 = 0.999), so m / (sqrt(v) + eps) is
large for every parameter at once; a larger epsilon (1e-3 and up) removes the near-division by zero.
Wortsman et al. 2023 ("Stable and low-precision training for large-scale vision-language models") measured it:
loss spikes follow 1-8 steps after the squared gradients outgrow v, i.e. when the RMS of the update
g / sqrt(v) goes well above 1; Thilak et al. 2022 (the slingshot effect) show Adam spiking after a long
near-zero-loss phase.

Here: a 16 -> 128 -> 128 -> 1 tanh MLP learns a teacher network of the same shape on 256 fixed points
(full batch, Adam lr 5e-3, eps 1e-8); the loss is below 1e-4 from step ~100 and settles around 1e-5 for the
rest of the calm phase (1500 steps; 800 at the small size), with small spikes of its own up to ~3e-4, the
slingshot in miniature (the healthy twin has none). Then every input feature drifts by half a standard
deviation. The new error is small (~4e-4) and would be fixed in a few gentle steps, but v, shrunk by the calm
phase, lags behind the new gradients: the RMS of Adam's update m / (sqrt(v) + eps) jumps from ~0.02 to ~1.8
within a few steps, all weights move about a learning rate each in the same direction, and the loss shoots up
several hundredfold, above where training started. The healthy twin uses eps 1e-3, larger than sqrt(v) in the
calm phase, so its steps stay proportional to the gradient (update RMS ~0.02 after the shift); nothing else
changes.
"""
from __future__ import annotations

import math
import statistics

import numpy as np
import torch
from torch import nn

from trainguard.scenarios.runner import Scenario, ScenarioResult, check_size, finish, seeded, train

__all__ = ["SCENARIO", "run"]

SEED = 0
N_SAMPLES, FEATURES, WIDTH = 256, 16, 128
LR = 5e-3
EPS, HEALTHY_EPS = 1e-8, 1e-3
DRIFT = 0.5  # the shift of every input feature, in standard deviations
CALM_STEPS = {"full": 1500, "small": 800}
AFTER_STEPS = 150
# The post-shift peak over the loss right after the shift: a blow-up above this factor.
BLOWUP = 20.0


def _mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(FEATURES, WIDTH), nn.Tanh(), nn.Linear(WIDTH, WIDTH), nn.Tanh(),
                         nn.Linear(WIDTH, 1))


def run(healthy: bool = False, guard_policy: str | None = None, log: str | None = None,
        size: str = "full") -> ScenarioResult:
    check_size(size)
    calm_steps = CALM_STEPS[size]
    rng = np.random.RandomState(SEED)
    x_calm = torch.from_numpy(rng.standard_normal((N_SAMPLES, FEATURES)).astype(np.float32))
    x_shifted = x_calm + DRIFT
    with seeded(SEED):
        teacher = _mlp(SEED + 100)
        with torch.no_grad():
            y_calm, y_shifted = teacher(x_calm), teacher(x_shifted)
        model = _mlp(SEED)
        optimizer = torch.optim.Adam(model.parameters(), lr=LR, eps=HEALTHY_EPS if healthy else EPS)
        # Full batch: one step per epoch; the data shift at epoch ``calm_steps``.
        trace = train(model=model, optimizer=optimizer,
                      batches=lambda epoch: [(x_calm, y_calm) if epoch < calm_steps else (x_shifted, y_shifted)],
                      loss_fn=lambda xb, yb: nn.functional.mse_loss(model(xb), yb),
                      epochs=calm_steps + AFTER_STEPS, guard_policy=guard_policy, log=log)
    losses = trace.losses
    calm = statistics.median(losses[calm_steps - 50:calm_steps]) if len(losses) >= calm_steps else math.nan
    after = losses[calm_steps:]
    at_shift = after[0] if after else math.nan
    peak = max(after, key=lambda v: v if math.isfinite(v) else math.inf) if after else math.nan
    peak_step = calm_steps + after.index(peak) if after else -1
    factor = peak / at_shift if after and at_shift > 0 else math.nan
    failed = not factor <= BLOWUP  # NaN (a non-finite peak) counts as a blow-up
    outcome = f"calm {calm:.1g}; shift at step {calm_steps}: {at_shift:.1g} -> {peak:.2g} ({factor:.0f}x)"
    metrics = {"calm_loss": calm, "loss_at_shift": at_shift, "peak_loss": peak, "peak_step": float(peak_step),
               "blowup_factor": factor, "first_loss": losses[0] if losses else math.nan,
               "shift_step": float(calm_steps)}
    return finish(SCENARIO.name, healthy, guard_policy, trace, failed=failed, outcome=outcome, metrics=metrics)


SCENARIO = Scenario(
    name="adam_epsilon", seed_id="002", seed_file="002_7de2275b18bcc5f2", cause="adam_epsilon",
    description="tanh MLP trained by Adam (eps 1e-8) to a ~1e-5 loss, then the inputs drift: "
                "the loss blows up hundreds of times over",
    healthy_twin="Adam eps 1e-3", run=run)
