"""``trainguard demo`` end to end (small size), and the guarded scenario run's policy fallback."""
from __future__ import annotations

import pytest

import trainguard.adapters.torch as torch_adapter
from trainguard.cli import main
from trainguard.io.runlog import read_runlog
from trainguard.scenarios import SCENARIOS, get_scenario
from trainguard.scenarios.summary import actions_taken, cause_found


def test_demo_small_prints_one_row_per_scenario_and_writes_logs_and_html(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # one table row per line, so the rows can be read back
    code = main(["demo", "--small", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    rows = {name: line for line in out.splitlines() for name in SCENARIOS if line.startswith(f"│ {name} (")}
    assert set(rows) == set(SCENARIOS)
    for name, line in rows.items():
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        assert len(cells) == 6
        unguarded, cause, action, guarded, seconds = cells[1:]
        assert unguarded.startswith("FAIL: "), line  # every seed case really fails without a guard
        assert cause and action and guarded.startswith(("OK: ", "FAIL: "))
        assert " + " in seconds
        log = read_runlog(tmp_path / f"{name}.jsonl")
        assert log.steps and log.end is not None and not log.problems
    assert "causes found right:" in out
    page = (tmp_path / "demo.html").read_text(encoding="utf-8")
    assert page.count("<svg") >= len(SCENARIOS) and all(f'id="{name}"' in page for name in SCENARIOS)


def test_demo_rejects_an_unknown_scenario_in_one_line(tmp_path, capsys):
    assert main(["demo", "--scenario", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("trainguard demo: error: unknown scenario 'nope'") and "\n" not in err


def test_guarded_run_falls_back_and_says_so_when_a_policy_is_not_offered(monkeypatch, tmp_path):
    real = torch_adapter.Guard

    class GuardWithoutAuto(real):
        def __init__(self, model, optimizer, policy="observe", log=None, **kwargs):
            if policy == "auto":
                raise ValueError("unknown policy 'auto'")
            super().__init__(model, optimizer, policy=policy, log=log, **kwargs)

    monkeypatch.setattr(torch_adapter, "Guard", GuardWithoutAuto)
    result = get_scenario("unscaled_data").run(guard_policy="auto", log=str(tmp_path / "run.jsonl"))
    assert (result.policy, result.policy_used) == ("auto", "safe")
    assert any("'auto' unavailable" in note for note in result.notes)
    assert actions_taken(result).endswith("(policy 'safe': 'auto' unavailable)")
    assert result.findings and cause_found(result) != "-"


@pytest.mark.parametrize("healthy", [False, True])
def test_guarded_result_carries_the_guards_findings_actions_and_diagnosis(healthy):
    result = get_scenario("unscaled_data").run(healthy=healthy, guard_policy="observe")
    assert result.policy_used == "observe" and result.actions == ()
    assert result.diagnosis is not None
    if healthy:
        assert not result.failed and result.top_cause == "none"
    else:
        assert result.failed and result.findings  # observe never repairs: the NaN still happens


def test_a_run_that_raises_shows_as_an_error_row_and_exit_1(tmp_path, capsys, monkeypatch):
    import trainguard.scenarios as scenarios

    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setitem(scenarios.SCENARIOS, "unscaled_data", scenarios.SCENARIOS["unscaled_data"]._replace(run=broken))
    monkeypatch.setenv("COLUMNS", "400")
    assert main(["demo", "--scenario", "unscaled_data", "--out", str(tmp_path)]) == 1
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("│ unscaled_data"))
    assert "error: RuntimeError: boom" in row


def _result(**kwargs):
    from trainguard.scenarios import ScenarioResult

    base = dict(name="x", healthy=False, policy="auto", policy_used="auto", losses=(1.0,), final_loss=1.0,
                nonfinite=False, diverged=False, failed=True, outcome="", seconds=0.0, metrics={})
    return ScenarioResult(**{**base, **kwargs})


def test_cause_cell_falls_back_to_the_most_severe_finding_without_a_diagnosis():
    from trainguard.core.actions import Action
    from trainguard.core.findings import Finding, Severity

    findings = (Finding("loss_spike", Severity.WARNING, 3, None, {}, ""),
                Finding("non_finite", Severity.CRITICAL, 7, None, {}, ""),
                Finding("divergence", Severity.CRITICAL, 9, None, {}, ""))
    assert cause_found(_result(findings=findings, diagnosis=None)) == "finding: non_finite"
    assert cause_found(_result(diagnosis=None)) == "-"
    assert cause_found(_result(findings=findings, diagnosis=())) == "none"
    kinds = (("skip_step", 1), ("clip", 2), ("skip_step", 3))
    actions = tuple(Action(kind, step, None, {}, {}) for kind, step in kinds)
    assert actions_taken(_result(actions=actions)) == "skip_step x2, clip"
    assert actions_taken(_result()) == "-"
