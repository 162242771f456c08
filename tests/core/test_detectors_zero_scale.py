"""Ratios to robust statistics that can be 0: every symptom detector on streams whose median, level, best, start or
last-layer gradient is exactly 0 (a dead network, a loss that underflows to 0). None raises; none fires on the zero
alone."""
from __future__ import annotations

import math

import pytest

from trainguard.core.detector import replay
from trainguard.core.detectors import (default_detectors, divergence, exploding_gradient, loss_spike, plateau,
                                       vanishing_gradient)
from trainguard.core.monitor import Monitor
from trainguard.core.stats import LayerStats, StepStats


def dead_network(n: int = 200) -> list[StepStats]:
    """Keras fit on a network that died: the gradient norm is 0 on most steps (median 0), now and then not."""
    layers = (LayerStats("dense.kernel", grad_norm=0.0, grad_abs_mean=0.0, update_ratio=0.0, zero_grad_fraction=1.0),
              LayerStats("dense_1.kernel", grad_norm=0.0, grad_abs_mean=0.0, update_ratio=0.0, zero_grad_fraction=1.0))
    return [StepStats(step=i, loss=0.6931, grad_norm=(1e-3 * (i % 7 == 3)), lrs=(1e-3,),
                      layers=layers if i % 25 == 0 else ()) for i in range(n)]


def zero_losses(n: int = 300) -> list[StepStats]:
    """A loss that underflows to exactly 0 after step 100, with a rare positive batch, then a zero start again."""
    return [StepStats(step=i, loss=(0.0 if i >= 100 and i % 37 else 0.5 * (i < 100) + 0.02 * (i >= 100)),
                      grad_norm=(0.0 if i >= 100 and i % 37 else 0.3)) for i in range(n)]


@pytest.mark.parametrize("make", [exploding_gradient, loss_spike, divergence, plateau, vanishing_gradient],
                         ids=lambda m: m.__name__)
@pytest.mark.parametrize("stream", [dead_network, zero_losses], ids=lambda s: s.__name__)
def test_no_detector_raises_on_a_zero_statistic(make, stream):
    found, _ = replay(make(), stream())
    assert all(math.isfinite(v) for f in found for v in f.evidence.values() if isinstance(v, float))


def test_a_dead_network_gets_no_exploding_gradient_and_keeps_every_detector_on():
    monitor = Monitor(default_detectors())
    for stats in dead_network():
        monitor.observe(stats)
    assert monitor.disabled == []
    assert not [f for f in monitor.findings if f.code == "exploding_gradient"]


def test_a_zero_starting_loss_has_no_scale_for_plateau_or_divergence():
    stream = [StepStats(step=i, loss=0.0 if i < 30 else 1e-3 * (i % 5)) for i in range(600)]
    assert replay(divergence(), stream)[0] == []
    assert all(f.severity.name == "INFO" for f in replay(plateau(), stream)[0])


def test_a_zero_last_layer_gradient_has_no_first_to_last_ratio():
    layers = (LayerStats("fc1.weight", grad_norm=5.0, grad_abs_mean=1e-2), LayerStats("fc2.weight", grad_norm=0.0))
    stream = [StepStats(step=i, loss=1.0, grad_norm=5.0, layers=layers) for i in range(10)]
    assert replay(exploding_gradient(), stream)[0] == []
    assert replay(vanishing_gradient(), stream)[0] == []
