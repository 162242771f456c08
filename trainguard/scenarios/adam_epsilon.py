"""Seed 002: Adam with a tiny epsilon, trained to a near-zero loss, blows up on its own after a long calm phase.

The user's network trained well for 200k batches, then its loss grew, every time from the same point. The
accepted answer: near the optimum Adam's second-moment estimate v becomes very small; when the gradients grow
again, m (beta1 = 0.9) reacts ten times faster than v (beta2 = 0.999), so m / (sqrt(v) + eps) is large for every
parameter at once; a larger epsilon (1e-3 and up) removes the near-division by zero.
Wortsman et al. 2023 ("Stable and low-precision training for large-scale vision-language models") measured it:
loss spikes follow 1-8 steps after the squared gradients outgrow v, i.e. when the RMS of the update
g / sqrt(v) goes well above 1. Thilak et al. 2022 (the slingshot effect) show Adam, trained to a near-zero loss,
spiking on its own, with nothing in the data changing; Cohen et al. 2022 ("Adaptive gradient methods at the
edge of stability") give the reason: the step size Adam really takes is lr / (sqrt(v) + eps), and as v shrinks
it grows until the iterate no longer fits in the loss valley.

Here: a 16 -> 128 -> 128 -> 1 tanh MLP fits a teacher network of the same shape on 256 fixed points (full batch,
the same data at every step, Adam lr 5e-3, eps 1e-8). The loss is below 1e-4 from step 97 and falls to ~5e-7 by
step 440, while the gradient norm sinks from 0.43 to ~2e-5 and v with it (median sqrt(v_hat) 2e-4 at step 100,
9e-5 at step 440). The step per unit of gradient, lr / (sqrt(v_hat) + eps), keeps growing (~55 per weight at
the median), until at step ~430, 330-odd steps into the calm, it no longer fits the valley's sharpest direction: the
gradient grows ~1.6x a step (2e-5 -> 0.08 in 20 steps), m follows, v lags (the update RMS g / sqrt(v_hat)
rises from 0.002 to 2.6), and the loss jumps ~1300x within a few steps, with nothing in the data changed. Then
v catches up, the loss settles, and it happens again (step 775: 2e-8 -> 5e-4, 27000x). The healthy twin
differs only in eps = 1e-3, ten times sqrt(v_hat): its step per unit of gradient stays below lr / eps = 5, and
its loss falls smoothly (1e-4 at step 227, 2e-5 at 600) with no rise at all.
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
STEPS = {"full": 900, "small": 600}
# Calm: the loss is below CALM_LOSS (the teacher's outputs have variance ~0.04). A blow-up: the loss rises more
# than BLOWUP times above its median over the CALM_WINDOW steps before.
CALM_LOSS = 1e-4
CALM_WINDOW = 50
BLOWUP = 10.0


def _mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(FEATURES, WIDTH), nn.Tanh(), nn.Linear(WIDTH, WIDTH), nn.Tanh(),
                         nn.Linear(WIDTH, 1))


def run(healthy: bool = False, guard_policy: str | None = None, log: str | None = None,
        size: str = "full") -> ScenarioResult:
    check_size(size)
    rng = np.random.RandomState(SEED)
    x = torch.from_numpy(rng.standard_normal((N_SAMPLES, FEATURES)).astype(np.float32))
    with seeded(SEED):
        teacher = _mlp(SEED + 100)
        with torch.no_grad():
            y = teacher(x)
        model = _mlp(SEED)
        optimizer = torch.optim.Adam(model.parameters(), lr=LR, eps=HEALTHY_EPS if healthy else EPS)
        # Full batch: one step per epoch, the same data every time.
        trace = train(model=model, optimizer=optimizer, batches=lambda epoch: [(x, y)],
                      loss_fn=lambda xb, yb: nn.functional.mse_loss(model(xb), yb),
                      epochs=STEPS[size], guard_policy=guard_policy, log=log)
    failed, outcome, metrics = _judge_calm_then_blowup(trace.losses)
    return finish(SCENARIO.name, healthy, guard_policy, trace, failed=failed, outcome=outcome, metrics=metrics)


def _judge_calm_then_blowup(losses: list[float]) -> tuple[bool, str, dict[str, float]]:
    """Failed when, once calm (loss < CALM_LOSS), the loss rose > BLOWUP x its median over the steps before
    (a non-finite loss counts as a blow-up). Without one, ``blowup_factor`` is the largest such rise seen."""
    first = losses[0] if losses else math.nan
    settle = next((i for i, v in enumerate(losses) if v < CALM_LOSS), None)
    onset, largest_rise = None, (math.nan if settle is None else 0.0)
    if settle is not None:
        for i in range(settle + CALM_WINDOW, len(losses)):
            level = statistics.median(losses[i - CALM_WINDOW:i])
            rise = losses[i] / level if math.isfinite(losses[i]) else math.inf
            largest_rise = max(largest_rise, rise)
            if rise > BLOWUP:
                onset = i
                break
    metrics = {"first_loss": first, "settle_step": float(settle) if settle is not None else math.nan,
               "onset_step": math.nan, "calm_steps": math.nan, "calm_loss": math.nan, "calm_max_loss": math.nan,
               "peak_loss": math.nan, "peak_step": math.nan, "blowup_factor": largest_rise,
               "final_loss": losses[-1] if losses else math.nan}
    if settle is None:
        return False, f"never calm: loss {first:.2g} -> {metrics['final_loss']:.2g}", metrics
    if onset is None:
        outcome = (f"calm from step {settle}: loss {losses[settle]:.1g} -> {losses[-1]:.1g}, "
                   f"no rise (largest {largest_rise:.2g}x)")
        return False, outcome, metrics
    calm = statistics.median(losses[onset - CALM_WINDOW:onset])
    after = losses[onset:onset + CALM_WINDOW]
    peak = max(after, key=lambda v: v if math.isfinite(v) else math.inf)
    metrics.update(onset_step=float(onset), calm_steps=float(onset - settle), calm_loss=calm,
                   calm_max_loss=max(losses[settle:onset]), peak_loss=peak, peak_step=float(onset + after.index(peak)),
                   blowup_factor=peak / calm)
    outcome = f"calm {calm:.1g} for {onset - settle} steps; at step {onset}: -> {peak:.2g} ({peak / calm:.0f}x)"
    return True, outcome, metrics


SCENARIO = Scenario(
    name="adam_epsilon", seed_id="002", seed_file="002_7de2275b18bcc5f2", cause="adam_epsilon",
    description="tanh MLP fit by full-batch Adam (eps 1e-8) to a ~5e-7 loss on fixed data: after hundreds of "
                "calm steps the loss blows up a thousandfold on its own",
    healthy_twin="Adam eps 1e-3", run=run)
