"""A trial that ``auto`` kept confirms its cause, even once the repair removed the symptom the rules read."""
from __future__ import annotations

from trainguard.core.actions import Action
from trainguard.core.diagnosis import diagnose
from trainguard.core.stats import StepStats

# A calm run: the loss falls smoothly, nothing for a rule to read (what seed 002 looks like once repaired).
CALM = [StepStats(step=i, loss=1.0 / (1 + 0.05 * i), grad_norm=1.0, lrs=(1e-3,)) for i in range(300)]


def trial(kept: bool, cause: str = "adam_epsilon") -> Action:
    return Action("trial", 120, "adam_epsilon", {"cause": cause, "repair": "raise_adam_epsilon", "eps": 1e-3},
                  {"kept": kept, "loss_trend": 0.2, "loss_window": 0.1})


def test_a_kept_trial_names_its_cause_with_the_trial_as_evidence():
    assert diagnose(CALM, []) == []
    causes = diagnose(CALM, [], actions=[trial(kept=True)])
    assert causes[0].code == "adam_epsilon" and causes[0].confidence >= 0.9
    assert causes[0].evidence["kept_trial"]["step"] == 120
    assert "trial" in causes[0].message


def test_a_rolled_back_trial_confirms_nothing():
    assert diagnose(CALM, [], actions=[trial(kept=False)]) == []


def test_a_trial_naming_no_known_cause_is_ignored():
    assert diagnose(CALM, [], actions=[trial(kept=True, cause="not_a_cause")]) == []
