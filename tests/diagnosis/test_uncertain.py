"""``uncertain`` rather than a confident wrong cause: no rule reaches 0.6 without separating evidence, and look-alike
candidates that nothing separates are reported together."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from _diag_streams import explode, healthy, update_ratios, with_data
from trainguard.core.diagnosis import Cause, diagnose, top_code
from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import ActivationStats, StepStats, TensorSummary


def _stuck_at_ln10(n: int = 300, seed: int = 0) -> list[StepStats]:
    """A loss-only stream: a network that outputs a constant scores ln 10 (+- the batches' label mix)."""
    rng = np.random.default_rng(seed)
    return [StepStats(step=i, loss=float(math.log(10) * math.exp(rng.normal(0, 0.01)))) for i in range(n)]


def test_a_loss_stuck_at_a_trivial_level_with_nothing_else_logged_is_uncertain():
    causes = diagnose(_stuck_at_ln10(), [])
    assert top_code(causes) == "uncertain"
    candidates = causes[0].evidence["candidates"]
    assert {c["code"] for c in candidates} >= {"dead_relu", "vanishing_gradient", "saturated_activation"}
    assert all(c["would_separate"] and c["confidence"] < 0.6 for c in candidates)
    assert causes[0].confidence < 0.6 and [c.code for c in causes[1:]] == [c["code"] for c in candidates]
    back = [Cause.from_dict(d) for d in json.loads(json.dumps([c.to_dict() for c in causes], allow_nan=False))]
    assert top_code(back) == "uncertain" and back[0].evidence == causes[0].evidence


def test_what_separates_the_candidates_ends_the_uncertainty():
    tiny_lr = [replace(s, lrs=(1e-8,)) for s in _stuck_at_ln10()]
    assert top_code(diagnose(tiny_lr, [])) == "lr_too_low"
    dead = [replace(s, activations=(ActivationStats("relu1", "relu", dead_fraction=1.0),
                                    ActivationStats("(output)", "output", output_std=0.0)))
            if s.step % 25 == 0 else s for s in _stuck_at_ln10()]
    causes = diagnose(dead, [])
    assert top_code(causes) == "dead_relu" and causes[0].confidence >= 0.6
    assert "separated_by" in causes[0].evidence


def _streams():
    stats = healthy()
    yield "healthy", stats, []
    yield "exploding", *_exploding()
    yield "exploding, large updates", update_ratios(_exploding()[0], 0.05), _exploding()[1]
    yield "unscaled inputs", *_exploding(inputs=TensorSummary(40.0, 20.0, 90.0))
    yield "unscaled targets", *_exploding(targets=TensorSummary(-3.0, 180.0, 560.0))
    yield "stuck", _stuck_at_ln10(), []
    yield "spike", [replace(s, loss=s.loss * 50) if s.step == 150 else s for s in stats], \
        [Finding("loss_spike", Severity.WARNING, 150, None, {}, "")]
    yield "divergence, loss only", [StepStats(step=i, loss=1.0 + max(0, i - 100) * 0.05) for i in range(300)], []


def _exploding(**data):
    stats = explode(with_data(healthy(60), **data), start=30, nan_at=36)
    return stats, [Finding("exploding_gradient", Severity.ERROR, 32, "fc1.weight", {}, "")]


@pytest.mark.parametrize("name,stats,found", list(_streams()), ids=[name for name, *_ in _streams()])
def test_no_cause_reaches_0_6_without_separating_evidence(name, stats, found):
    for cause in diagnose(stats, found):
        if cause.code != "uncertain" and cause.confidence >= 0.6:
            assert cause.evidence.get("separated_by"), (name, cause.code, cause.confidence)


def _nan_from(step: int, n: int = 40) -> list[StepStats]:
    """A loss-only stream (an epoch-level log): finite and falling until ``step``, NaN from there on."""
    return [StepStats(step=i, loss=2.0 / (1 + i) if i < step else math.nan, loss_finite=i < step) for i in range(n)]


def test_a_loss_non_finite_from_its_first_points_is_uncertain_among_the_causes_of_a_blow_up():
    # keras-team/keras#11860 in a CSVLogger file: every epoch row is nan (Adam's epsilon in float16).
    found = [Finding("non_finite", Severity.ERROR, 0, None, {}, "loss is non-finite")]
    causes = diagnose(_nan_from(0, n=4), found)
    assert top_code(causes) == "uncertain" and causes[0].confidence < 0.6
    assert {c["code"] for c in causes[0].evidence["candidates"]} == {
        "lr_too_high", "exploding_gradient", "unscaled_data", "adam_epsilon", "bad_batch"}
    assert causes[1].evidence["early_blow_up"] == {"non_finite_from_step": 0, "finite_losses_before": 0,
                                                   "last_finite_loss": None}


def test_a_blow_up_after_a_course_the_rules_can_read_gets_no_blow_up_candidates():
    found = [Finding("non_finite", Severity.ERROR, 30, None, {}, "loss is non-finite")]
    assert all("early_blow_up" not in c.evidence for c in diagnose(_nan_from(30), found))
