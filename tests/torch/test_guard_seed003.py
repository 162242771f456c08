"""Seed 003 end to end: the make_regression MLP with SGD momentum explodes, then goes NaN; the guard says so at
the right steps and names the layer. Its twin on standardized targets trains cleanly and raises nothing."""
from __future__ import annotations

import trainguard
from trainguard.core.findings import Severity

from _guard_runs import seed003_data, seed003_model, train


def test_seed003_reports_exploding_gradient_then_non_finite_naming_the_layer():
    model, optimizer = seed003_model()
    x, y = seed003_data()
    with trainguard.Guard(model, optimizer, policy="observe") as guard:
        steps = train(model, optimizer, x, y, epochs=3, guard=guard)
    first_bad = next(s.step for s in guard.history if not s.finite)
    assert first_bad == steps - 1, "the run stops at its first NaN"

    codes = [f.code for f in guard.findings]
    assert "exploding_gradient" in codes and "non_finite" in codes, guard.findings
    exploding = next(f for f in guard.findings if f.code == "exploding_gradient")
    non_finite = next(f for f in guard.findings if f.code == "non_finite")
    assert exploding.step < non_finite.step, "the explosion is seen before the NaN"
    assert exploding.severity >= Severity.WARNING
    assert non_finite.step == first_bad
    assert non_finite.severity >= Severity.ERROR
    layer_names = {name for name, _ in model.named_parameters()} | {name for name, _ in model.named_modules()}
    assert non_finite.where in layer_names, non_finite


def test_seed003_on_standardized_targets_raises_nothing_in_100_epochs():
    model, optimizer = seed003_model()
    x, y = seed003_data(standardized=True)
    with trainguard.Guard(model, optimizer) as guard:
        steps = train(model, optimizer, x, y, epochs=100, guard=guard)
    assert steps == 100 * 16
    assert all(s.finite for s in guard.history)
    loud = [f for f in guard.findings if f.severity >= Severity.WARNING]
    assert not loud, loud
