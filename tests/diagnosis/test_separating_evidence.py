"""Evidence that separates a cause from the look-alike that used to win on the dev corpus (issue 11 section 4):
a float16 Adam whose second moment underflowed (keras#11860), an RNN whose gradient explodes over a calm run
(bittensor#229) or from its first steps (keras#5127), each on a synthetic stream shaped like the reported run."""
from __future__ import annotations

import math
from dataclasses import replace

from _diag_streams import healthy
from trainguard.core.diagnosis import diagnose
from trainguard.core.findings import Finding, Severity


def codes(causes):
    return [c.code for c in causes]


def _non_finite_from(stats, step):
    return [replace(s, loss=math.nan, grad_norm=math.nan, loss_finite=False, grads_finite=False, layers=(),
                    activations=()) if s.step >= step else s for s in stats]


def _fp16_adam(rms_at_first_step, nan_at=None):
    """keras#11860: Adam's statistics at steady RMS 0.3, but ``rms_at_first_step`` at step 0 (v underflowed)."""
    stats = [replace(s, layers=tuple(replace(l, adam_update_rms=rms_at_first_step if s.step == 0 else 0.3,
                                             update_ratio=9.3 if s.step == 0 else 1e-3) for l in s.layers))
             for s in healthy(120)]
    return stats if nan_at is None else _non_finite_from(stats, nan_at)


def test_an_adam_update_rms_beyond_adams_bound_then_nan_is_adam_epsilon():
    stats = _fp16_adam(1.4e4, nan_at=1)
    causes = diagnose(stats, [Finding("non_finite", Severity.ERROR, 1, "fc1.weight", {}, "nan")])
    assert codes(causes)[0] == "adam_epsilon" and causes[0].confidence >= 0.6
    assert causes[0].evidence["step"] == 0 and causes[0].evidence["adam_update_rms"] == 1.4e4
    assert "lr_too_high" not in codes(causes[:1])


def test_the_same_rms_in_a_run_that_trains_well_is_no_cause():
    # The float16 fixed twin (epsilon 1e-4) reaches RMS 19 at its first step and trains.
    assert diagnose(_fp16_adam(1.4e4), []) == []


def test_an_rms_within_adams_bound_before_a_nan_is_not_an_underflow():
    # 7: Adam's own bound at (0.9, 0.999); the healthy corpus' largest is 4.
    stats = _fp16_adam(7.0, nan_at=60)
    causes = diagnose(stats, [Finding("non_finite", Severity.ERROR, 60, "fc1.weight", {}, "nan")])
    assert "adam_epsilon" not in codes(causes)
