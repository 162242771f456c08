from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest

from _seed003 import seed003_stream
from trainguard.core.detectors import default_detectors, exploding_gradient
from trainguard.core.findings import Severity
from trainguard.core.detector import replay
from trainguard.core.stats import LayerStats, StepStats
from trainguard.core.window import robust_track, robust_z, track_exact, track_push, track_size


def calm_norms(n, seed=0, level=1.0, noise=0.2):
    return level * (1.0 + noise * np.random.default_rng(seed).uniform(-1.0, 1.0, n))


def layers(first, last, bias=1.0):
    return (LayerStats("conv.weight", grad_norm=first), LayerStats("conv.bias", grad_norm=bias),
            LayerStats("fc.weight", grad_norm=last), LayerStats("fc.bias", grad_norm=bias))


def test_docstring_example():
    module = importlib.import_module("trainguard.core.detectors.exploding_gradient")
    assert doctest.testmod(module).failed == 0


def test_seed003_fires_at_step_3_before_non_finite_naming_the_first_layer():
    found, _ = replay(default_detectors(), seed003_stream("exploding"))
    codes = [(f.code, f.step) for f in found]
    exploding = [f for f in found if f.code == "exploding_gradient"]
    assert len(exploding) == 1
    finding = exploding[0]
    # WARNING, not ERROR (docs/severity.md): sustained growth harms the run; the NaN at step 7 is what breaks it.
    assert (finding.step, finding.severity, finding.where) == (3, Severity.WARNING, "fc1.weight")
    assert finding.evidence["rule"] == "sustained_growth"
    assert finding.evidence["growth"] == pytest.approx(10624 / 637.18)
    assert finding.evidence["layer_growth"]["fc1.weight"] > finding.evidence["layer_growth"]["fc2.weight"]
    assert codes.index(("exploding_gradient", 3)) < codes.index(("non_finite", 7))


def test_seed003_at_the_standard_cadence_still_fires_at_step_3_without_a_layer():
    found, _ = replay(exploding_gradient(), seed003_stream("exploding", layer_every=25))
    assert [(f.step, f.where) for f in found] == [(3, None)]


@pytest.mark.parametrize("layer_every", [1, 25])
def test_seed003_healthy_twin_never_fires(layer_every):
    found, _ = replay(exploding_gradient(), seed003_stream("healthy", layer_every=layer_every))
    assert found == []


def test_robust_outlier_fires_once_at_the_spike_and_names_the_layer_that_grew():
    norms = calm_norms(200)
    norms[150] = 20.0
    stream = [StepStats(step=i, loss=1.0, grad_norm=float(g),
                        layers=layers(0.5 * g, g) if i in (149, 150) else ()) for i, g in enumerate(norms)]
    # Only fc.weight grows at the spike.
    stream[150] = StepStats(step=150, loss=1.0, grad_norm=20.0, layers=layers(0.5 * norms[149], 20.0))
    found, _ = replay(exploding_gradient(), stream)
    assert len(found) == 1
    finding = found[0]
    # INFO (docs/severity.md): a brief gradient outlier on a calm loss, the run is fine.
    assert (finding.step, finding.severity, finding.evidence["rule"]) == (150, Severity.INFO, "robust_z")
    assert finding.evidence["z"] >= 6 and finding.evidence["ratio_to_median"] >= 5
    assert finding.where == "fc.weight"


def test_an_outlier_below_five_times_the_median_is_not_an_explosion():
    norms = calm_norms(200, noise=0.02)
    norms[150] = 3.0  # z is huge in a quiet run, but 3x is within healthy minibatch noise
    found, _ = replay(exploding_gradient(), [StepStats(step=i, loss=1.0, grad_norm=float(g))
                                          for i, g in enumerate(norms)])
    assert found == []


def test_no_z_score_before_min_history():
    norms = calm_norms(30)
    norms[10] = 8.0  # one rising step of 8x: below the growth rule's 10x, and only 10 norms of history
    found, _ = replay(exploding_gradient(), [StepStats(step=i, loss=1.0, grad_norm=float(g))
                                          for i, g in enumerate(norms)])
    assert found == []


def test_growth_while_the_loss_falls_is_not_an_explosion():
    # A warm-up: the gradient norm rises 16x over 4 steps while the loss improves.
    norms = [0.1, 0.2, 0.4, 0.8, 1.6]
    losses = [2.3, 2.2, 2.1, 2.0, 1.9]
    found, _ = replay(exploding_gradient(), [StepStats(step=i, loss=l, grad_norm=g)
                                          for i, (l, g) in enumerate(zip(losses, norms))])
    assert found == []


def test_growth_over_more_than_four_steps_is_not_sustained_growth():
    norms = [1.0, 1.7, 2.9, 4.9, 8.3, 14.0]  # 14x, but any 4 consecutive rises give < 10x
    found, _ = replay(exploding_gradient(), [StepStats(step=i, loss=1.0 + i, grad_norm=g) for i, g in enumerate(norms)])
    assert found == []


def test_growth_without_a_loss_is_a_warning():
    found, _ = replay(exploding_gradient(), [StepStats(step=i, grad_norm=g) for i, g in enumerate([1.0, 3.0, 12.0])])
    assert [(f.step, f.severity) for f in found] == [(2, Severity.WARNING)]


def test_one_sudden_jump_is_not_sustained_growth():
    found, _ = replay(exploding_gradient(), [StepStats(step=i, loss=1.0, grad_norm=g)
                                          for i, g in enumerate([1.0, 1.1, 30.0, 1.0])])
    assert found == []


def test_an_outlier_escalates_once_to_a_warning_when_it_keeps_growing():
    norms = list(calm_norms(100))
    stream = [StepStats(step=i, loss=1.0, grad_norm=float(g)) for i, g in enumerate(norms)]
    stream += [StepStats(step=100 + i, loss=1.0 + i, grad_norm=g) for i, g in enumerate([6.0, 12.0, 40.0, 200.0])]
    found, _ = replay(exploding_gradient(), stream)
    # The stretch starts at the outlier (6.0): 200 / 6 = 33x over three rises while the loss rose.
    assert [(f.step, f.severity) for f in found] == [(100, Severity.INFO), (103, Severity.WARNING)]
    assert found[1].evidence["rules"] == ["sustained_growth", "robust_z"]


def test_a_persistent_explosion_fires_once_and_the_detector_re_arms_after_it_clears():
    norms = np.concatenate([calm_norms(100), calm_norms(40, seed=1, level=50.0, noise=0.1), calm_norms(200, seed=2),
                            [50.0], calm_norms(10, seed=3)])
    found, _ = replay(exploding_gradient(), [StepStats(step=i, loss=1.0, grad_norm=float(g))
                                          for i, g in enumerate(norms)])
    assert [f.step for f in found] == [100, 340]


def test_autotrainer_ratio_needs_two_samples_and_names_the_first_weight_tensor():
    stream = [StepStats(step=i, loss=1.0, grad_norm=1.0) for i in range(60)]
    stream[10] = StepStats(step=10, loss=1.0, grad_norm=1.0, layers=layers(100.0, 1.0))
    stream[20] = StepStats(step=20, loss=1.0, grad_norm=1.0, layers=layers(1.0, 1.0))
    stream[30] = StepStats(step=30, loss=1.0, grad_norm=1.0, layers=layers(100.0, 1.0, bias=1e-9))
    stream[40] = StepStats(step=40, loss=1.0, grad_norm=1.0, layers=layers(75.0, 1.0, bias=1e-9))
    found, _ = replay(exploding_gradient(), stream)
    assert len(found) == 1
    finding = found[0]
    assert (finding.step, finding.severity, finding.where) == (40, Severity.WARNING, "conv.weight")
    assert finding.evidence["first_last_ratio"] == pytest.approx(75.0)
    assert finding.evidence["last_layer"] == "fc.weight"  # biases are not the last layer's gradient


def test_a_ratio_below_70_does_not_fire():
    stream = [StepStats(step=i, loss=1.0, grad_norm=1.0, layers=layers(50.0, 1.0)) for i in range(10)]
    found, _ = replay(exploding_gradient(), stream)
    assert found == []


def test_non_finite_norms_are_skipped_and_never_enter_the_window():
    norms = list(calm_norms(100))
    stream = [StepStats(step=i, loss=1.0, grad_norm=float(g)) for i, g in enumerate(norms)]
    stream[50] = StepStats(step=50, loss=float("nan"), grad_norm=float("inf"), loss_finite=False, grads_finite=False)
    stream[51] = StepStats(step=51, loss=1.0, grad_norm=float("nan"), grads_finite=False)
    found, state = replay(exploding_gradient(), stream)
    assert found == []
    assert track_size(state.norms) == 98
    median, scale = track_exact(state.norms)
    assert np.isfinite(median) and np.isfinite(scale)


def test_robust_track_agrees_with_robust_z():
    values = np.random.default_rng(5).lognormal(size=300)
    track = robust_track(128)
    for x in values:
        track = track_push(track, float(x))
    median, scale = track_exact(track)
    assert (5.0 - median) / scale == pytest.approx(robust_z(5.0, values[-128:]))


def test_a_rise_from_a_dip_back_to_the_usual_level_is_not_an_explosion():
    # Near convergence a minibatch gradient norm dips, then rises 24x in two steps, to its usual level.
    norms = list(calm_norms(100)) + [0.05, 0.3, 1.2, 1.0]
    found, _ = replay(exploding_gradient(), [StepStats(step=i, loss=0.01, grad_norm=float(g))
                                          for i, g in enumerate(norms)])
    assert found == []


def test_a_jump_then_a_wiggle_is_an_outlier_not_sustained_growth():
    # A data shift: the gradient norm jumps 240x in one step and wiggles up 1.4x the next while the loss is higher.
    norms = list(calm_norms(100, level=1e-4)) + [0.024, 0.033, 0.03, 0.031]
    losses = [1e-5] * 100 + [4e-4] * 4
    found, _ = replay(exploding_gradient(), [StepStats(step=i, loss=l, grad_norm=float(g))
                                          for i, (l, g) in enumerate(zip(losses, norms))])
    assert [(f.step, f.severity, f.evidence["rule"]) for f in found] == [(100, Severity.INFO, "robust_z")]


def test_a_gradient_that_jumps_with_a_much_larger_loss_jump_is_new_data_not_an_explosion():
    # A curriculum switch (measured on a healthy run): the norm rises 1.4x, 1.3x, then jumps 36x (66x in all) while
    # the loss jumps 560x; an explosion's gradient runs ahead of its loss (seed 003: 16.7x against 1.9x).
    norms = list(calm_norms(100, level=0.075)) + [0.105, 0.137, 4.94, 4.1, 3.9]
    losses = [0.0192] * 100 + [0.0195, 0.0193, 10.7, 9.0, 8.5]
    found, _ = replay(exploding_gradient(), [StepStats(step=i, loss=l, grad_norm=float(g))
                                          for i, (l, g) in enumerate(zip(losses, norms))])
    assert [(f.step, f.severity, f.evidence["rule"]) for f in found] == [(102, Severity.INFO, "robust_z")]


def test_a_dead_network_with_a_zero_median_gradient_norm_raises_nothing():
    # Keras fit on a network that died: the median gradient norm is 0; an occasional non-zero norm once divided
    # by it (ZeroDivisionError). No level, no outlier; growth from exactly 0 is not measured either.
    norms = [0.0] * 60 + [1e-3, 0.0, 0.0, 2e-3, 0.5, 0.0] + [0.0] * 30
    found, _ = replay(exploding_gradient(), [StepStats(step=i, loss=0.693, grad_norm=g) for i, g in enumerate(norms)])
    assert found == []


def test_a_loss_rising_from_exactly_zero_vetoes_growth():
    # A confident classifier's float32 loss is exactly 0, then a rare-class batch: loss 0 -> 0.02 with the gradient.
    norms = list(calm_norms(100, level=1e-3)) + [1e-4, 1e-2, 0.3]
    losses = [1e-4] * 100 + [0.0, 1e-3, 0.02]
    found, _ = replay(exploding_gradient(), [StepStats(step=i, loss=l, grad_norm=float(g))
                                          for i, (l, g) in enumerate(zip(losses, norms))])
    assert [f.evidence["rule"] for f in found] == ["robust_z"]


def heavy_tailed_norms(n, seed=0, sigma=0.8):
    return np.exp(sigma * np.random.default_rng(seed).standard_normal(n))


def test_a_growth_inside_the_runs_own_heavy_tail_is_not_an_explosion():
    # The corpus' fixed deep ReLU twin of torch_aise16557_deep_sigmoid: norms spread over 0.3-9 (median ~0.9), then
    # 0.94 -> 11.6 in 4 rises with the loss 0.42 -> 1.21, and back to 2.8 two steps later. 12x from the stretch's
    # first norm, but 13x its window's median only, and within the window's own upper tail.
    norms = list(heavy_tailed_norms(150)) + [0.94, 1.27, 2.54, 4.87, 11.6, 5.4, 2.8]
    losses = [0.6] * 150 + [0.42, 0.31, 0.52, 0.5, 1.21, 1.8, 1.2]
    found, _ = replay(exploding_gradient(), [StepStats(step=i, loss=l, grad_norm=float(g))
                                          for i, (l, g) in enumerate(zip(losses, norms))])
    assert all(f.severity == Severity.INFO for f in found), [f.message for f in found]


def test_a_growth_far_beyond_the_runs_tail_is_still_an_explosion():
    norms = list(heavy_tailed_norms(150)) + [0.94, 2.5, 8.0, 30.0, 120.0]
    losses = [0.6] * 150 + [0.42, 0.5, 0.7, 1.0, 1.6]
    found, _ = replay(exploding_gradient(), [StepStats(step=i, loss=l, grad_norm=float(g))
                                          for i, (l, g) in enumerate(zip(losses, norms))])
    # 8.0 is the run's first outlier, where the stretch starts: 120 / 8 = 15x over two rises.
    assert [(f.step, f.severity) for f in found if f.severity == Severity.WARNING] == [(154, Severity.WARNING)]


def warmup_stream(stretch_losses):
    """A noisy recurrent-net warm-up: the LR rises linearly over 200 steps, the loss falls 2.0 -> 1.2 with +-25%
    batch noise, and at step 150 the gradient norm jumps 2.5x, 2.4x, 2.5x (15x) with the given losses."""
    rng = np.random.default_rng(0)
    n = 150
    losses = list(np.linspace(2.0, 1.3, n) * (1.0 + 0.25 * rng.uniform(-1.0, 1.0, n))) + list(stretch_losses)
    norms = list(calm_norms(n, noise=0.3)) + [0.8, 2.0, 4.8, 12.0]
    return [StepStats(step=i, loss=float(l), grad_norm=float(g), lrs=(1e-3 * (i + 1) / 200,))
            for i, (l, g) in enumerate(zip(losses, norms))]


def test_a_gradient_norm_growing_while_the_lr_warms_up_and_the_loss_falls_is_not_harm():
    # The loss rose 1.0 -> 1.3 across the stretch (+30%) but stays below its level before (~1.45): noise on a
    # falling loss, not an unstable update.
    found, _ = replay(exploding_gradient(), warmup_stream([1.0, 1.1, 1.2, 1.3]))
    assert all(f.severity == Severity.INFO for f in found), [f.message for f in found]


def test_a_gradient_growing_during_warm_up_with_the_loss_level_rising_is_an_explosion():
    found, _ = replay(exploding_gradient(), warmup_stream([1.5, 1.9, 2.4, 3.2]))
    assert [(f.step, f.severity) for f in found if f.severity == Severity.WARNING] == [(153, Severity.WARNING)]
