"""The seed scenarios: each real user case in ``shared/seeds/`` as a small reproducible PyTorch run, with a
healthy twin that differs only in the fault. Tests, ``trainguard demo`` and the benchmarks run them.

>>> from trainguard.scenarios import SCENARIOS, get_scenario          # doctest: +SKIP
>>> result = get_scenario("unscaled_data").run(healthy=False)          # doctest: +SKIP
>>> result.failed, result.outcome                                      # doctest: +SKIP
(True, 'loss non-finite at step 5 (epoch 1), peak 1.6e+27')
>>> get_scenario("unscaled_data").run(guard_policy="auto", log="runs/unscaled.jsonl")   # doctest: +SKIP

Each ``run(healthy=False, guard_policy=None, log=None, size="full")`` fixes its seeds, takes a few seconds on
one CPU core ("small" is shorter where the pathology still shows), leaves the caller's RNG state as it was, and
returns a :class:`ScenarioResult`. ``guard_policy=None`` trains with a plain ``optimizer.step()``; a policy name
trains through ``trainguard.Guard(model, optimizer, policy=..., log=log)``.
"""
from __future__ import annotations

from trainguard.scenarios import (
    adam_epsilon, batch_size_dependent_loss, bn_inference_mode, exploding_gradient, unscaled_data,
    vanishing_gradient,
)
from trainguard.scenarios.runner import SIZES, GuardUnavailable, Scenario, ScenarioResult

__all__ = ["SCENARIOS", "get_scenario", "Scenario", "ScenarioResult", "GuardUnavailable", "SIZES"]

# In the order of the seed files.
SCENARIOS: dict[str, Scenario] = {
    module.SCENARIO.name: module.SCENARIO
    for module in (bn_inference_mode, unscaled_data, vanishing_gradient, adam_epsilon, exploding_gradient,
                   batch_size_dependent_loss)
}
for _scenario in SCENARIOS.values():
    _scenario.check()


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; expected one of {', '.join(SCENARIOS)}") from None
