"""Seed 003: an MLP regression on targets in the hundreds, SGD with momentum: the gradients explode.

The article trains Dense(25, relu, he_uniform) -> Dense(1) on sklearn's ``make_regression`` (20 features,
noise 0.1, 500 training samples, targets with a standard deviation of about 150), MSE, SGD lr 0.01 momentum 0.9,
and the model "fails to learn, predicting NaN". The initial error is in the tens of thousands, so is the
gradient; momentum 0.9 carries each overshoot into the next step; the gradient norm grows about tenfold per
step and the loss is inf within ten steps.

The healthy twin standardizes the targets, "the traditional solution" the article names, and changes nothing
else. The article's own remedy, gradient clipping (clipnorm=1.0), is a repair rather than a healthy
configuration: a clipped run still computes exploding raw gradients and a starting loss in the tens of
thousands, which a guard rightly reports; clipping is what the guarded run's policy may apply.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trainguard.scenarios.runner import (
    Scenario, ScenarioResult, check_size, finish, judge_regression, minibatches, seeded, train,
)

__all__ = ["SCENARIO", "run", "make_regression"]

SEED = 1
N_TRAIN, BATCH_SIZE = 500, 32
# The faulty run dies within ten steps; the healthy twin needs its 320 steps (0.4 s) to show it trains.
EPOCHS = {"full": 20, "small": 20}
# A run has learned when its final loss is below this fraction of the targets' variance (so that runs on
# either scale compare: the guarded faulty run trains on the raw targets).
LEARNED_FRACTION = 0.1


def make_regression(n: int = 1000, features: int = 20, informative: int = 10, noise: float = 0.1,
                    seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's ``make_regression`` recipe: Gaussian inputs, a linear target on the informative features with
    coefficients uniform in [0, 100), Gaussian noise."""
    rng = np.random.RandomState(seed)
    x = rng.standard_normal((n, features))
    coef = np.zeros(features)
    coef[:informative] = 100 * rng.uniform(size=informative)
    y = x @ coef + noise * rng.standard_normal(n)
    return x.astype(np.float32), y.astype(np.float32)


def run(healthy: bool = False, guard_policy: str | None = None, log: str | None = None,
        size: str = "full") -> ScenarioResult:
    check_size(size)
    x_all, y_all = make_regression()
    x, y = torch.from_numpy(x_all[:N_TRAIN]), torch.from_numpy(y_all[:N_TRAIN]).unsqueeze(1)
    if healthy:
        y = (y - y.mean()) / y.std()
    with seeded(SEED):
        model = nn.Sequential(nn.Linear(20, 25), nn.ReLU(), nn.Linear(25, 1))
        nn.init.kaiming_uniform_(model[0].weight, nonlinearity="relu")  # Keras' he_uniform
        nn.init.zeros_(model[0].bias)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        order = torch.Generator().manual_seed(SEED)
        trace = train(model=model, optimizer=optimizer,
                      batches=lambda epoch: minibatches(x, y, BATCH_SIZE, order),
                      loss_fn=lambda xb, yb: nn.functional.mse_loss(model(xb), yb),
                      epochs=EPOCHS[size], guard_policy=guard_policy, log=log)
    failed, outcome, metrics = judge_regression(trace, float(y.var()), LEARNED_FRACTION)
    return finish(SCENARIO.name, healthy, guard_policy, trace, failed=failed, outcome=outcome, metrics=metrics)


SCENARIO = Scenario(
    name="exploding_gradient", seed_id="003", seed_file="003_5d555ab636405208", cause="exploding_gradient",
    description="MLP 20 -> 25 (ReLU) -> 1 on make_regression targets (std ~150), SGD 0.01 momentum 0.9: "
                "inf/NaN within ten steps",
    healthy_twin="targets standardized", run=run)
