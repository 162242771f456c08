"""``renormalize_saturating_layers`` holds its evidence (the output_collapse WARNING, reported once per episode)
while the output stays collapsed: another repair's trial proposed first at that step does not lose it; a
spreading output ends it (trainguard/core/policies/renormalize.py)."""
from __future__ import annotations

from trainguard.core.findings import Finding, Severity
from trainguard.core.policies import Plan
from trainguard.core.policies.renormalize import renormalize_saturating_layers
from trainguard.core.stats import ActivationStats, StepStats


def _stats(step: int, output_std: float | None) -> StepStats:
    if output_std is None:  # a step the probe did not sample
        return StepStats(step=step, loss=0.08)
    acts = (ActivationStats("1", "sigmoid", output_std=0.1), ActivationStats("3", "sigmoid", output_std=0.1),
            ActivationStats("(output)", "output", output_std=output_std))
    return StepStats(step=step, loss=0.08, activations=acts)


def _proposed(spreads: list[float | None]) -> list[bool]:
    repair = renormalize_saturating_layers()
    state, out = repair.init(), []
    collapse = Finding("output_collapse", Severity.WARNING, 50, "(output)", {"value": 1e-4}, "collapsed")
    for i, spread in enumerate(spreads):
        proposal, state = repair.propose(_stats(50 + i, spread), (collapse,) if i == 0 else (), Plan(), state)
        out.append(proposal is not None)
    return out


def test_the_collapse_is_held_after_its_finding_until_the_output_spreads_out():
    assert _proposed([1e-4, None, None, 1.5e-4, None]) == [True] * 5
    assert _proposed([1e-4, None, 3e-4, None]) == [True, True, False, False]


def test_no_finding_no_proposal():
    repair = renormalize_saturating_layers()
    state = repair.init()
    for step in range(5):
        proposal, state = repair.propose(_stats(step, 1e-4), (), Plan(), state)
        assert proposal is None
