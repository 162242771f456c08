"""The signal detectors the diagnosis adds: each fires on its fault and stays quiet on a healthy stream."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest

from _diag_streams import healthy, with_data
from trainguard.core.detectors.activation_health import activation_health
from trainguard.core.detectors.adam_update import adam_update
from trainguard.core.detectors.batch_size_loss import batch_size_loss
from trainguard.core.detectors.data_scale import data_scale, scale_factor
from trainguard.core.detectors.module_mode import module_mode
from trainguard.core.detector import replay
from trainguard.core.findings import Severity
from trainguard.core.stats import ActivationStats, LayerStats, StepStats, TensorSummary

ALL = (data_scale, module_mode, adam_update, activation_health, batch_size_loss)


@pytest.mark.parametrize("factory", ALL)
@pytest.mark.parametrize("seed", range(5))
def test_healthy_stream_raises_nothing(factory, seed):
    assert replay(factory(), healthy(seed=seed, steps_per_epoch=37, last_batch=32))[0] == []


def test_scale_factor_is_distance_from_unit_scale():
    assert scale_factor(TensorSummary(0.0, 1.0, 3.0)) == pytest.approx(1.0)
    assert scale_factor(TensorSummary(2.0, 1.155, 4.0)) == pytest.approx(math.hypot(2.0, 1.155))
    assert scale_factor(TensorSummary(0.0, 0.01, 0.03)) == pytest.approx(100.0)
    assert scale_factor(TensorSummary(0.0, 0.0, 0.0)) is None
    assert scale_factor(TensorSummary(math.nan, 1.0, 1.0)) is None


def test_data_scale_reports_targets_in_the_hundreds_once_as_info():
    stats = with_data(healthy(50), targets=TensorSummary(mean=3.0, std=180.0, abs_max=520.0))
    found, _ = replay(data_scale(), stats)
    assert [(f.code, f.where, f.severity) for f in found] == [("data_scale", "targets", Severity.INFO)]
    assert found[0].evidence["scale_factor"] == pytest.approx(180.0, rel=0.01)


def test_data_scale_reports_uncentred_inputs_as_info():
    stats = with_data(healthy(50), inputs=TensorSummary(mean=2.0, std=1.16, abs_max=4.1))
    found, _ = replay(data_scale(), stats)
    assert [(f.where, f.severity) for f in found] == [("inputs", Severity.INFO)]


def test_module_mode_reports_once_per_episode_and_rearms():
    stats = [StepStats(step=i, eval_mode_modules=("bn1", "drop") if i in (0, 5, 10, 20) else
                       (() if i % 5 == 0 else None)) for i in range(25)]
    found, _ = replay(module_mode(), stats)
    assert [f.step for f in found] == [0, 20]
    assert found[0].evidence == {"modules": ["bn1", "drop"], "count": 2}
    assert found[0].severity == Severity.INFO


def _adam_stream(rms_at: dict[int, float], norm_at: dict[int, float] | None = None, n: int = 200):
    norm_at = norm_at or {}
    return [StepStats(step=i, loss=1.0, grad_norm=norm_at.get(i, 1.0),
                      layers=(LayerStats("w", grad_norm=1.0, adam_update_rms=rms_at.get(i, 0.8),
                                         adam_sqrt_v_median=1e-6),))
            for i in range(n)]


def test_adam_update_fires_when_rms_is_far_above_one_with_an_ordinary_gradient():
    found, _ = replay(adam_update(), _adam_stream({150: 12.0, 151: 15.0, 170: 9.0}))
    assert [f.step for f in found] == [150]
    assert found[0].evidence["adam_update_rms"] == 12.0 and found[0].where == "w"


def test_adam_update_quiet_when_the_gradient_itself_exploded_or_early():
    assert replay(adam_update(), _adam_stream({150: 12.0}, norm_at={150: 500.0}))[0] == []
    assert replay(adam_update(), _adam_stream({10: 30.0}))[0] == []


def _acts(step: int, dead: float = 0.1, saturated: float = 0.0, out_std: float = 1.0):
    return StepStats(step=step, loss=1.0, targets=TensorSummary(0.5, 0.29, 1.0) if step == 0 else None,
                     activations=(ActivationStats("relu1", "relu", dead_fraction=dead, output_std=1.0),
                                  ActivationStats("sig1", "sigmoid", saturated_fraction=saturated, output_std=0.2),
                                  ActivationStats("(output)", "output", output_std=out_std)))


def test_activation_health_needs_patience_and_names_the_layer():
    stats = [_acts(0), _acts(5, dead=0.7), _acts(10, dead=0.1), _acts(15, dead=0.8), _acts(20, dead=0.9)]
    found, _ = replay(activation_health(), stats)
    assert [(f.code, f.where, f.step) for f in found] == [("dead_relu", "relu1", 20)]


def test_activation_health_saturation_and_output_collapse():
    stats = [_acts(5 * i, saturated=0.9, out_std=1e-4) for i in range(4)]
    found, _ = replay(activation_health(), stats)
    codes = {(f.code, f.where): f.step for f in found}
    assert codes == {("saturated_activation", "sig1"): 5, ("output_collapse", "(output)"): 10}
    collapse = next(f for f in found if f.code == "output_collapse")
    assert collapse.evidence["output_to_target_std"] == pytest.approx(1e-4 / 0.29)


def test_a_growing_output_is_learning_not_collapsed():
    stats = [_acts(5 * i, out_std=1e-4 * 3 ** i) for i in range(6)]
    assert replay(activation_health(), stats)[0] == []


def test_output_collapse_needs_the_targets_scale():
    stats = [replace(_acts(5 * i, out_std=1e-4), targets=None) for i in range(6)]
    assert replay(activation_health(), stats)[0] == []


def test_activation_health_ignores_non_finite_steps():
    stats = [replace(_acts(5 * i, dead=1.0), loss_finite=False) for i in range(5)]
    assert replay(activation_health(), stats)[0] == []


def test_batch_size_loss_finds_the_partial_batch_spike_and_its_period():
    stats = healthy(400, steps_per_epoch=37, last_batch=4)
    stats = [replace(s, loss=s.loss * 8.0) if s.batch_size == 4 else s for s in stats]
    found, _ = replay(batch_size_loss(), stats)
    assert len(found) == 1
    ev = found[0].evidence
    assert ev["period"] == 37 and ev["usual_batch_size"] == 32 and ev["small_batch_size"] == 4
    assert ev["median_ratio"] == pytest.approx(8.0, rel=0.3)
    assert ev["ratio_if_loss_scales_as_1_over_batch"] == 8.0


@pytest.mark.parametrize("seed", range(5))
def test_batch_size_loss_quiet_on_a_correctly_averaged_partial_batch(seed):
    assert replay(batch_size_loss(), healthy(400, seed=seed, steps_per_epoch=37, last_batch=4))[0] == []


def test_adam_update_rearms_after_a_calm_stretch():
    found, _ = replay(adam_update(), _adam_stream({150: 12.0, 180: 9.0}))
    assert [f.step for f in found] == [150, 180]
