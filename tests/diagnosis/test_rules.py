"""Each cause rule on synthetic streams: it fires on its fault, ranks as documented, and stays quiet otherwise."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest

from _diag_streams import explode, healthy, update_ratios, with_data
from trainguard.core.diagnosis import diagnose
from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import ActivationStats, StepStats, TensorSummary

UNSCALED_INPUTS = TensorSummary(mean=2.0, std=1.16, abs_max=4.1)  # seed 001 experiment 2: x in [0, 4]
UNSCALED_TARGETS = TensorSummary(mean=-3.0, std=180.0, abs_max=560.0)  # seed 003: make_regression targets


def finding(code: str, step: int, severity: Severity = Severity.WARNING, where: str | None = None, **evidence):
    return Finding(code, severity, step, where, evidence, code)


def codes(causes):
    return [c.code for c in causes]


def by_code(causes):
    return {c.code: c for c in causes}


def exploding_run(**data):
    stats = explode(with_data(healthy(60), **data), start=30, nan_at=36)
    found = [finding("exploding_gradient", 32, Severity.ERROR, "fc1.weight"),
             finding("non_finite", 36, Severity.ERROR, "fc1.weight")]
    return stats, found


@pytest.mark.parametrize("seed", range(4))
def test_a_healthy_run_has_no_cause(seed):
    assert diagnose(healthy(seed=seed), []) == []


def test_unscaled_inputs_are_the_root_of_an_early_explosion():
    stats, found = exploding_run(inputs=UNSCALED_INPUTS, targets=UNSCALED_INPUTS)
    causes = diagnose(stats, found)
    assert codes(causes)[0] == "unscaled_data"
    explained = by_code(causes)["exploding_gradient"]
    assert explained.evidence["explained_by"] == "unscaled_data"
    assert explained.confidence < causes[0].confidence
    assert causes[0].evidence["off_scale"] == ["inputs"]  # targets 2.3x off: too little to matter


def test_unscaled_targets_alone_leave_the_exploding_gradient_on_top_and_contribute():
    stats, found = exploding_run(targets=UNSCALED_TARGETS)
    causes = diagnose(stats, found)
    assert codes(causes)[0] == "exploding_gradient"
    top = causes[0]
    assert top.evidence["non_finite_step"] == 36 and top.evidence["layers"] == ["fc1.weight"]
    contributing = by_code(causes)["unscaled_data"]
    assert contributing.evidence["off_scale"] == ["targets"]
    assert "explained_by" not in contributing.evidence


def test_an_explosion_after_large_updates_in_every_layer_is_the_learning_rate():
    stats, found = exploding_run()
    causes = diagnose(update_ratios(stats, 0.05), found)
    assert codes(causes)[0] == "lr_too_high" and causes[0].confidence >= 0.6
    assert causes[0].evidence["median_update_ratio"] == pytest.approx(0.05)
    assert causes[0].evidence["share_of_layers_large"] == 1.0
    assert by_code(causes)["exploding_gradient"].evidence["explained_by"] == "lr_too_high"
    assert "unscaled_data" not in codes(causes)


def test_an_explosion_after_large_updates_in_one_layer_only_is_an_exploding_gradient():
    stats, found = exploding_run()
    one_layer = [replace(s, layers=tuple(replace(l, update_ratio=0.05) if l.name == "fc1.weight" else l
                                         for l in s.layers)) if s.step < 30 else s for s in stats]
    causes = diagnose(one_layer, found)
    assert codes(causes)[0] == "exploding_gradient" and causes[0].confidence >= 0.6
    assert "lr_too_high" not in codes(causes)


def test_data_scale_without_trouble():
    assert diagnose(with_data(healthy(), inputs=UNSCALED_INPUTS), []) == []  # 2.3x off, training fine
    fitted = [replace(s, activations=tuple(replace(a, output_std=a.output_std * 180.0) if a.kind == "output" else a
                                           for a in s.activations)) for s in healthy()]
    assert diagnose(with_data(fitted, targets=UNSCALED_TARGETS), []) == []  # off scale, yet it trains well
    stalled = [replace(s, loss=1.0 + 0.01 * math.sin(s.step)) for s in fitted]
    causes = diagnose(with_data(stalled, targets=UNSCALED_TARGETS), [])
    assert codes(causes)[0] == "unscaled_data" and causes[0].confidence >= 0.6


def test_eval_mode_batchnorm_is_the_root_of_the_explosion_it_causes():
    stats, found = exploding_run()
    stats = [replace(s, eval_mode_modules=("features.1", "features.5")) if s.eval_mode_modules is not None else s
             for s in stats]
    causes = diagnose(stats, found)
    assert codes(causes)[0] == "bn_inference_mode"
    assert causes[0].confidence == 0.9 and causes[0].evidence["modules"] == ["features.1", "features.5"]
    assert by_code(causes)["exploding_gradient"].evidence["explained_by"] == "bn_inference_mode"


def test_eval_mode_alone_in_a_run_that_trains_well_is_a_note():
    stats = [replace(s, eval_mode_modules=("bn",)) if s.eval_mode_modules is not None else s for s in healthy()]
    causes = diagnose(stats, [])
    assert codes(causes) == ["bn_inference_mode"] and causes[0].confidence == 0.4  # a deliberate freeze, likely


def _adam_calm_then_spike(n: int = 400, spike: int = 300):
    stats = []
    for s in healthy(n):
        rms = 14.0 if spike <= s.step < spike + 30 else 0.9
        layers = tuple(replace(l, adam_update_rms=rms, adam_sqrt_v_median=1e-7) for l in s.layers)
        loss = s.loss * (30.0 if spike + 3 <= s.step < spike + 10 else 1.0)
        stats.append(replace(s, layers=layers, loss=loss))
    return stats


def test_a_lagging_adam_second_moment_explains_the_spike_after_a_calm_phase():
    stats = _adam_calm_then_spike()
    found = [finding("loss_spike", 303), finding("exploding_gradient", 304)]
    causes = diagnose(stats, found)
    assert codes(causes)[0] == "adam_epsilon"
    assert causes[0].confidence == 0.9 and causes[0].evidence["followed_by"] == ["exploding_gradient", "loss_spike"]
    # The gradient norm never stayed up and the loss came back: no explosion of its own to explain.
    assert "exploding_gradient" not in codes(causes)


def test_a_lagging_adam_second_moment_that_did_no_harm_is_only_a_candidate():
    # the RMS peak of a lag, but no spike, divergence or non-finite value after it (a new task learned down)
    stats = [replace(s, loss=t.loss) for s, t in zip(_adam_calm_then_spike(), healthy(400))]
    causes = {c.code: c.confidence for c in diagnose(stats, [])}
    assert causes.get("adam_epsilon") == 0.4


def test_partial_batch_spikes_are_a_batch_size_dependent_loss_not_bad_batches():
    stats = healthy(400, steps_per_epoch=37, last_batch=4)
    stats = [replace(s, loss=s.loss * 8.0) if s.batch_size == 4 else s for s in stats]
    spikes = [finding("loss_spike", s.step) for s in stats if s.batch_size == 4]
    causes = diagnose(stats, spikes)
    assert codes(causes) == ["batch_size_dependent_loss"]
    assert causes[0].evidence["period"] == 37 and causes[0].confidence == 0.95


def _vanishing(n: int = 300, collapse: bool = True, first_layer_scale: float = 1e-4):
    stats = []
    for s in healthy(n):
        loss = 0.09 * math.exp(0.02 * math.sin(s.step))  # stalled
        layers = tuple(replace(l, grad_norm=l.grad_norm * (first_layer_scale if l.name.startswith("fc1") else 1.0),
                               update_ratio=1e-6 if l.name.startswith("fc1") else 1e-3) for l in s.layers)
        acts = tuple(replace(a, output_std=1e-4) if a.kind == "output" and collapse else a for a in s.activations)
        stats.append(replace(s, loss=loss, layers=layers, activations=acts,
                             targets=TensorSummary(0.5, 0.29, 1.0) if s.targets else None))
    return stats


def test_vanishing_gradient_from_a_collapsed_output_and_a_tiny_first_layer_gradient():
    causes = diagnose(_vanishing(), [])
    assert codes(causes)[0] == "vanishing_gradient"
    ev = causes[0].evidence
    assert ev["output_layer"] == "(output)" and ev["first_last_grad_ratio"]["first"] == "fc1.weight"
    assert ev["first_last_grad_ratio"]["ratio"] < 1e-3
    assert "lr_too_low" not in codes(causes)  # the last layer moves at 1e-3: the learning rate is fine


def test_no_vanishing_gradient_when_the_loss_still_falls_and_the_output_varies():
    stats = healthy()
    stats = [replace(s, layers=tuple(replace(l, grad_norm=l.grad_norm * (1e-3 if l.name.startswith("fc1") else 1))
                                     for l in s.layers)) for s in stats]
    assert diagnose(stats, []) == []


def test_lr_too_low_when_every_tensor_barely_moves_and_the_loss_stalls():
    stats = update_ratios([replace(s, loss=1.0 + 0.01 * math.sin(s.step)) for s in healthy()], 1e-7)
    causes = diagnose(stats, [])
    assert codes(causes) == ["lr_too_low"]
    assert causes[0].evidence["max_update_ratio"] == pytest.approx(1e-7)
    assert diagnose(update_ratios(stats, 1e-3), []) == []


def test_lr_too_high_needs_large_updates_before_the_divergence():
    stats = healthy()
    diverging = [finding("divergence", 200)]
    assert codes(diagnose(update_ratios(stats, 0.2), diverging)) == ["lr_too_high"]
    assert diagnose(stats, diverging) == []  # ratios ~1e-3: the evidence speaks against the learning rate
    no_layers = [replace(s, layers=()) for s in stats]
    weak = diagnose(no_layers, diverging)  # the usual suspect, not separated from its look-alikes
    assert codes(weak) == ["lr_too_high"] and weak[0].confidence == 0.5


def test_one_spike_that_recovers_is_a_bad_batch():
    stats = healthy()
    stats = [replace(s, loss=s.loss * 50, batch_fingerprint="ab12") if s.step == 150 else s for s in stats]
    causes = diagnose(stats, [finding("loss_spike", 150)])
    assert codes(causes) == ["bad_batch"]
    assert causes[0].evidence["batch_fingerprints"] == {150: "ab12"}


def test_repeated_spikes_are_not_bad_batches():
    spikes = [finding("loss_spike", step) for step in (40, 90, 140, 190)]
    assert "bad_batch" not in codes(diagnose(healthy(), spikes))


def test_a_spike_the_run_never_recovers_from_is_not_a_bad_batch():
    stats = [replace(s, loss=s.loss * 50) if s.step >= 150 else s for s in healthy()]
    assert "bad_batch" not in codes(diagnose(stats, [finding("loss_spike", 150)]))


def _dead(stats, fraction):
    return [replace(s, activations=tuple(replace(a, dead_fraction=fraction) if a.kind == "relu" else a
                                         for a in s.activations)) for s in stats]


def test_dead_relu_is_the_cause_of_a_stall_and_a_sparse_layer_a_note_in_a_run_that_trains():
    # Most units off for a whole batch in a run whose loss falls: a finding, not what went wrong (Glorot et al. 2011).
    assert diagnose(_dead(healthy(), 0.8), []) == []
    # A layer wholly dead on every sample is capacity lost even while the loss falls (test_persistent_units.py).
    assert by_code(diagnose(_dead(healthy(), 1.0), []))["dead_relu"].confidence == 0.6
    stalled = [replace(s, loss=1.0) for s in _dead(healthy(), 1.0)]
    causes = diagnose(stalled, [])
    assert codes(causes)[0] == "dead_relu" and causes[0].confidence == 0.75
    assert set(causes[0].evidence["layers"]) == {"act1", "act2"}


def _with_sigmoid(stats, saturated):
    return [replace(s, activations=(ActivationStats("sig", "sigmoid", saturated_fraction=saturated),)
                    + s.activations) if s.activations else s for s in stats]


def test_saturated_activation():
    assert diagnose(_with_sigmoid(healthy(), 0.4), []) == []
    assert by_code(diagnose(_with_sigmoid(healthy(), 0.9), []))["saturated_activation"].confidence == 0.6
    causes = diagnose(_with_sigmoid([replace(s, loss=1.0) for s in healthy()], 0.9), [])
    assert codes(causes)[0] == "saturated_activation" and causes[0].evidence["layers"] == {"sig": 0.9}


def _stuck_wrong_side(stats, every=10, stuck_loss=0.57, its_grad=0.004):
    """One pattern in ``every`` keeps a large error that reaches no gradient (SO 13632976: a tanh output
    saturated on the wrong side); the others fit, their loss and gradient small together."""
    out = []
    for s in stats:
        late = s.step >= 50
        if late and s.step % every == 3:
            out.append(replace(s, loss=stuck_loss, grad_norm=its_grad))
        elif late:
            out.append(replace(s, loss=s.loss * 1e-3, grad_norm=s.grad_norm * 0.005))
        else:
            out.append(s)
    return out


def _final_tanh(stats, saturated=0.57):
    return [replace(s, activations=s.activations[:-1] + (
        ActivationStats("out_tanh", "tanh", saturated_fraction=saturated, output_std=s.activations[-1].output_std),
        s.activations[-1])) if s.activations else s for s in stats]


def test_a_saturated_output_whose_error_reaches_no_gradient_is_saturated_activation():
    stats = _final_tanh(_stuck_wrong_side(healthy(600)))
    found = [finding("saturated_activation", 100, Severity.INFO, where="out_tanh", saturated_fraction=0.57)]
    causes = diagnose(stats, found)
    assert codes(causes)[0] == "saturated_activation" and causes[0].confidence >= 0.6
    assert causes[0].evidence["worst_loss_over_median"] >= 100
    # The same losses with gradients that follow the error: the network still learns from those samples.
    follows = [replace(s, grad_norm=2.0) if s.loss == 0.57 else s for s in stats]
    assert "saturated_activation" not in codes(diagnose(follows, found))
    # Without the output measured saturated, hard samples are hard samples.
    assert "saturated_activation" not in codes(diagnose(_stuck_wrong_side(healthy(600)), []))


def test_a_saturated_final_sigmoid_is_a_confident_classifier_unless_the_loss_stalled():
    def final_sigmoid(stats):  # the sigmoid's output is the model's output: the same std over the batch
        return [replace(s, activations=s.activations[:-1] + (
            ActivationStats("sig", "sigmoid", saturated_fraction=0.9, output_std=s.activations[-1].output_std),
            s.activations[-1])) if s.activations else s for s in stats]
    assert diagnose(final_sigmoid(healthy()), []) == []
    stalled = diagnose(final_sigmoid([replace(s, loss=1.0) for s in healthy()]), [])
    assert codes(stalled)[0] == "saturated_activation"


def _overfitting_findings(stats, val, **metrics):
    """The overfitting detector's findings on a validation every 20 steps (its one definition)."""
    from trainguard.core.detector import replay
    from trainguard.core.detectors.overfitting import overfitting
    from trainguard.core.validation import Validation

    return replay(overfitting(), [Validation(s.step, val(s.step), {k: f(s.step) for k, f in metrics.items()},
                                             train_loss=s.loss) for s in stats if s.step % 20 == 19])[0]


def test_overfitting_when_validation_rises_while_training_falls():
    stats = healthy()
    causes = diagnose(stats, _overfitting_findings(stats, lambda step: 0.5 + 0.002 * abs(step - 100)))
    assert codes(causes) == ["overfitting"]
    assert causes[0].evidence["best_step"] == 99
    assert diagnose(stats, _overfitting_findings(stats, lambda step: 1.0 / (step + 1))) == []
    # The loss rose but the accuracy held: an information-level finding, no cause.
    held = _overfitting_findings(stats, lambda step: 0.5 + 0.002 * abs(step - 100), accuracy=lambda step: 0.9)
    assert held and diagnose(stats, held) == []


def test_no_layer_statistics_at_all_is_not_an_error():
    stats = [StepStats(step=i, loss=1.0 / (i + 1)) for i in range(100)]
    assert diagnose(stats, []) == []
    assert diagnose([], []) == []


def test_a_gradient_outlier_below_the_initial_level_is_not_an_explosion():
    stats = [replace(s, grad_norm=s.grad_norm * (0.05 if s.step >= 100 else 1.0) * (8 if s.step == 250 else 1))
             for s in healthy()]
    assert diagnose(stats, [finding("exploding_gradient", 250, Severity.ERROR)]) == []
    # One step's outlier that the norm and the loss come back from is that batch's gradient, not an explosion.
    once = [replace(s, grad_norm=s.grad_norm * 30) if s.step == 250 else s for s in healthy()]
    assert diagnose(once, [finding("exploding_gradient", 250, Severity.ERROR)]) == []
    stays = [replace(s, grad_norm=s.grad_norm * 30) if s.step >= 250 else s for s in healthy()]
    assert codes(diagnose(stays, [finding("exploding_gradient", 250, Severity.ERROR)])) == ["exploding_gradient"]


def _adam_calm_return(blow_up: bool):
    """Adam stats sampled every 25 steps (RMS never caught high); the gradient sinks 1000x, comes back at 300."""
    stats = []
    for s in healthy(400, layer_every=25):
        calm = 150 <= s.step < 300
        norm = s.grad_norm * (1e-4 if calm else (0.3 if s.step >= 300 else 1.0))
        loss = s.loss * (1e-3 if calm else 1.0) * (40.0 if blow_up and 303 <= s.step < 320 else 1.0)
        layers = tuple(replace(l, adam_update_rms=0.9) for l in s.layers)
        stats.append(replace(s, grad_norm=norm, loss=loss, layers=layers))
    return stats


def test_adam_gradients_back_from_a_calm_phase_then_a_blow_up_point_at_epsilon_without_the_rms_peak():
    causes = diagnose(_adam_calm_return(blow_up=True), [])
    assert codes(causes)[0] == "adam_epsilon" and causes[0].evidence["step"] == 300
    assert causes[0].evidence["return_factor"] > 100
    assert diagnose(_adam_calm_return(blow_up=False), []) == []  # gradients came back, the loss did not blow up
    sgd = [replace(s, layers=tuple(replace(l, adam_update_rms=None) for l in s.layers))
           for s in _adam_calm_return(blow_up=True)]
    assert "adam_epsilon" not in codes(diagnose(sgd, []))


def test_a_sampled_update_rms_that_crossed_1_at_the_return_strengthens_the_calm_return():
    # After a full-batch calm the RMS had sunk to ~1e-3 (v remembers the early, larger gradients); it then
    # crossed 1 (Wortsman et al.: the squared gradients outgrew v), though never reached the finding's 5.
    stats = [replace(s, layers=tuple(replace(l, adam_update_rms=0.002 if s.step <= 300 else 2.5) for l in s.layers))
             for s in _adam_calm_return(blow_up=True)]
    plain, crossed = diagnose(_adam_calm_return(blow_up=True), [])[0], diagnose(stats, [])[0]
    assert crossed.code == "adam_epsilon" and crossed.confidence > plain.confidence
    assert crossed.evidence["update_rms_before"] == pytest.approx(0.002)
    assert crossed.evidence["update_rms_after"] == pytest.approx(2.5)
    assert "update RMS" in crossed.message and "update RMS" not in plain.message
