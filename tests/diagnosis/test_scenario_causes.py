"""Each seed scenario, run under an observing guard at its small size: the top cause is the scenario's, and the
healthy twin gets no cause and no finding of warning or above."""
from __future__ import annotations

import pytest

pytest.importorskip("torch")

from trainguard.core.findings import Severity  # noqa: E402

SCENARIOS = ("bn_inference_mode", "unscaled_data", "vanishing_gradient", "adam_epsilon", "exploding_gradient",
             "batch_size_dependent_loss")


@pytest.fixture
def scenario(request):
    name = request.param
    module = pytest.importorskip(f"trainguard.scenarios.{name}", reason=f"scenario {name} not built yet")
    return module.SCENARIO


def _summary(result) -> str:
    causes = [(c.code, c.confidence) for c in result.diagnosis or ()]
    findings = [(f.code, f.severity.name, f.step) for f in result.findings]
    return f"{result.outcome}; causes {causes}; findings {findings[:8]}"


@pytest.mark.parametrize("scenario", SCENARIOS, indirect=True)
def test_the_top_cause_is_the_scenarios(scenario):
    result = scenario.run(healthy=False, guard_policy="observe", size="small")
    assert result.failed, f"{scenario.name}: the fault did not show: {result.outcome}"
    assert result.diagnosis, f"{scenario.name}: no diagnosis: {_summary(result)}"
    assert result.top_cause == scenario.cause, _summary(result)
    top = result.diagnosis[0]
    assert top.evidence and str(top.fix).endswith(top.doc)


@pytest.mark.parametrize("scenario", SCENARIOS, indirect=True)
def test_the_healthy_twin_has_no_cause(scenario):
    result = scenario.run(healthy=True, guard_policy="observe", size="small")
    assert not result.failed, f"{scenario.name}: the healthy twin failed: {result.outcome}"
    assert result.diagnosis == (), _summary(result)
    loud = [f for f in result.findings if f.severity >= Severity.WARNING]
    assert loud == [], _summary(result)
