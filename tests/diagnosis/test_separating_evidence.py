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


def _large_updates(stats, ratio=0.1):
    """SGD at a recurrent LM's learning rate: every weight tensor moves ``ratio`` of its norm per step."""
    return [replace(s, layers=tuple(replace(l, update_ratio=ratio) for l in s.layers)) for s in stats]


def _cliff(stats, at, jump=5000.0, loss_jump=35.0, nan_after=True):
    """bittensor#229: calm for ``at`` steps, then the gradient norm jumps ``jump``x in one step; NaN next."""
    out = [replace(s, grad_norm=s.grad_norm * jump, loss=s.loss * loss_jump, layers=()) if s.step == at else s
           for s in stats]
    return _non_finite_from(out, at + 1) if nan_after else out


def test_a_cliff_after_calm_large_updates_is_an_exploding_gradient_not_the_learning_rate():
    stats = _cliff(_large_updates(healthy(120)), at=61)
    causes = diagnose(stats, [Finding("non_finite", Severity.ERROR, 62, "recur.weight", {}, "nan")])
    assert codes(causes)[0] == "exploding_gradient" and causes[0].confidence >= 0.6
    assert causes[0].evidence["cliff"]["step"] == 61 and causes[0].evidence["cliff"]["jump"] >= 1000
    lr = {c.code: c for c in causes}.get("lr_too_high")
    assert lr is None or (lr.confidence < 0.6 and "separated_by" not in lr.evidence)


def test_the_same_updates_with_a_step_by_step_run_up_stay_the_learning_rate():
    # facerec#2 (lr 0.1): the gradient norm climbs over many steps before the blow-up; no cliff.
    stats = _large_updates(healthy(120), 0.05)
    stats = [replace(s, grad_norm=s.grad_norm * 1.6 ** (s.step - 49), loss=s.loss * 1.3 ** (s.step - 49))
             if s.step >= 50 else s for s in stats]
    stats = _non_finite_from(stats, 70)
    causes = diagnose(stats, [Finding("non_finite", Severity.ERROR, 70, "fc1.weight", {}, "nan")])
    assert codes(causes)[0] == "lr_too_high" and causes[0].confidence >= 0.6
    assert "cliff" not in {c.code: c for c in causes}["exploding_gradient"].evidence


def test_a_one_step_jump_that_the_run_recovers_from_is_no_cliff():
    stats = _cliff(healthy(120), at=61, nan_after=False)
    causes = diagnose(stats, [])
    assert not any("cliff" in c.evidence for c in causes)
    assert "exploding_gradient" not in codes(causes)


def test_a_gradient_norm_rising_every_step_into_a_nan_is_an_explosion():
    # keras#5127: a linear SimpleRNN, SGD 0.01: gradient norm 58 -> 124 -> 1701 -> inf in the first steps.
    stats = healthy(40)
    norms = (58.0, 124.0, 1701.0)
    stats = [replace(s, grad_norm=norms[s.step], loss=(3.8, 5.8, 36.8)[s.step]) if s.step < 3 else s
             for s in stats]
    stats = _non_finite_from(stats, 3)
    causes = diagnose(stats, [Finding("non_finite", Severity.ERROR, 3, "rnn.kernel", {}, "inf")])
    assert codes(causes)[0] == "exploding_gradient"
    assert causes[0].evidence["run_up_to_non_finite"]["run_up"] > 29


def test_an_adam_cliff_after_gradients_shrank_is_shared_with_adam_epsilon():
    # A calm at 1/1000 of the initial gradient norm under Adam, then the jump: the lag of a shrunk second moment
    # looks the same, so the cliff separates nothing.
    stats = [replace(s, grad_norm=s.grad_norm * (1e-3 if 20 <= s.step else 1.0),
                     layers=tuple(replace(l, adam_update_rms=0.3) for l in s.layers)) for s in healthy(120)]
    stats = _cliff(stats, at=80)
    causes = diagnose(stats, [Finding("non_finite", Severity.ERROR, 81, "fc1.weight", {}, "nan")])
    exploding = {c.code: c for c in causes}["exploding_gradient"]
    assert exploding.evidence["cliff"]["level_over_initial"] <= 0.1
    assert "separated_by" not in exploding.evidence and exploding.confidence < 0.6
