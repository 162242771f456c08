"""Seed 001, experiment 2: unscaled data makes a plain linear regression explode.

The blog fits y = x with Dense(32) -> Dense(1) (no activation), SGD lr 0.1, batches of 20. On 100 points in
[0, 1] it learns (loss 0.0026 after 20 epochs). On 100 points in [0, 4] the loss is 5.7e31 after the first
epoch and NaN after the second. Why: the two stacked linear layers make the loss quartic in the weights, its
curvature grows with E[x^2] (16x larger on [0, 4]), and lr 0.1 is past the stability limit, so every step
overshoots further. The healthy twin divides inputs and targets by 4 (the data in [0, 1], the blog's
experiment 1 scaled the same way) and changes nothing else.
"""
from __future__ import annotations

from torch import nn

from trainguard.scenarios import _seed001
from trainguard.scenarios.runner import Scenario, ScenarioResult, check_size, finish, judge_regression, seeded

__all__ = ["SCENARIO", "run"]

SEED = 1
HIGH = 4.0
NOISE = 0.1  # 5% of the range, as in the blog
# A run has learned when its final loss is below this fraction of the targets' variance (the blog's healthy
# run: 0.0026 against a variance of 0.085); a fraction, so that runs on either scale compare.
LEARNED_FRACTION = 0.1


def run(healthy: bool = False, guard_policy: str | None = None, log: str | None = None,
        size: str = "full") -> ScenarioResult:
    check_size(size)
    with seeded(SEED):
        x, y = _seed001.regression_data(HIGH, NOISE, SEED)
        if healthy:
            x, y = x / HIGH, y / HIGH
        model = nn.Sequential(_seed001.dense(1, 32), _seed001.dense(32, 1))
        trace = _seed001.fit(model, x, y, seed=SEED, size=size, guard_policy=guard_policy, log=log)
    failed, outcome, metrics = judge_regression(trace, float(y.var()), LEARNED_FRACTION)
    return finish(SCENARIO.name, healthy, guard_policy, trace, failed=failed, outcome=outcome, metrics=metrics)


SCENARIO = Scenario(
    name="unscaled_data", seed_id="001a", seed_file="001_567c7732530266af", cause="unscaled_data",
    description="y = x regression on inputs in [0, 4], Dense(32) -> Dense(1), SGD 0.1: NaN in the first epochs",
    healthy_twin="inputs and targets scaled to [0, 1]", run=run)
