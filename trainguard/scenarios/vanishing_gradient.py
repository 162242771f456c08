"""Seed 001, experiment 3: four sigmoid layers and the gradient vanishes; predictions are nearly constant.

The blog fits y = x on 100 noisy points in [0, 1] with 4 x Dense(32, sigmoid) + Dense(1), SGD lr 0.1: the
loss falls from 0.57 to 0.086 (the network learns the mean), the first layer's weights barely move, and the
model answers 0.57 for inputs 1, 2 and 3. Why: sigmoid's derivative is at most 0.25, so the gradient that
reaches the first layer is scaled down by that factor (times the weights) once per layer. The healthy twin
uses ReLU, as the blog suggests, and changes nothing else.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from trainguard.scenarios import _seed001
from trainguard.scenarios.runner import Scenario, ScenarioResult, check_size, finish, seeded

__all__ = ["SCENARIO", "run"]

SEED = 1
NOISE = 0.05
WIDTH, DEPTH = 32, 4
# Predictions on [0, 1] spanning less than this fraction of the targets' range count as "nearly constant".
FLAT_SPREAD = 0.2
HEALTHY_LOSS = 0.02


def _model(activation: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    fan_in = 1
    for _ in range(DEPTH):
        layers += [_seed001.dense(fan_in, WIDTH), activation()]
        fan_in = WIDTH
    return nn.Sequential(*layers, _seed001.dense(WIDTH, 1))


def run(healthy: bool = False, guard_policy: str | None = None, log: str | None = None,
        size: str = "full") -> ScenarioResult:
    check_size(size)
    with seeded(SEED):
        x, y = _seed001.regression_data(1.0, NOISE, SEED)
        model = _model(nn.ReLU if healthy else nn.Sigmoid)
        trace = _seed001.fit(model, x, y, seed=SEED, size=size, guard_policy=guard_policy, log=log)
        with torch.no_grad():
            predictions = model(torch.linspace(0, 1, 101).unsqueeze(1)).squeeze(1)
    spread = float(predictions.max() - predictions.min())  # the targets span 1.0 on this grid
    final = trace.losses[-1] if trace.losses else math.nan
    failed = not (spread >= FLAT_SPREAD and final < HEALTHY_LOSS)
    outcome = f"predictions span {spread:.2f} of the targets' 1.0, loss {final:.2g}"
    metrics = {"final_loss": final, "prediction_spread": spread, "prediction_mean": float(predictions.mean())}
    return finish(SCENARIO.name, healthy, guard_policy, trace, failed=failed, outcome=outcome, metrics=metrics)


SCENARIO = Scenario(
    name="vanishing_gradient", seed_id="001b", seed_file="001_567c7732530266af", cause="vanishing_gradient",
    description="4 x Dense(32, sigmoid) + Dense(1), SGD 0.1, y = x on [0, 1]: predictions nearly constant",
    healthy_twin="ReLU in place of sigmoid", run=run)
