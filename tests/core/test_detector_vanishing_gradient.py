from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest

from _seed003 import seed003_stream
from trainguard.core.detectors import vanishing_gradient
from trainguard.core.findings import Severity
from trainguard.core.detector import replay
from trainguard.core.stats import LayerStats, StepStats

HEALTHY = dict(grad_norm=1e-2, grad_abs_mean=1e-4, update_ratio=1e-3)


def net(first=None, middle=None, last=None, bias=None):
    """conv -> fc1 -> fc2 with healthy statistics unless overridden."""
    return (LayerStats("conv.weight", **{**HEALTHY, **(first or {})}),
            LayerStats("conv.bias", **{**HEALTHY, **(bias or {})}),
            LayerStats("fc1.weight", **{**HEALTHY, **(middle or {})}),
            LayerStats("fc2.weight", **{**HEALTHY, **(last or {})}))


def sampled(layers, samples, every=25, lr=0.01, plain_between=True):
    """``samples`` sampled steps ``every`` steps apart, with plain steps in between."""
    stream = []
    for step in range(samples * every):
        sampled_step = step % every == 0
        if sampled_step or plain_between:
            stream.append(StepStats(step=step, loss=1.0, grad_norm=1.0, lrs=(lr,),
                                    layers=layers if sampled_step else ()))
    return stream


def test_docstring_example():
    module = importlib.import_module("trainguard.core.detectors.vanishing_gradient")
    assert doctest.testmod(module).failed == 0


def test_autotrainer_ratio_fires_on_the_third_sample_naming_the_first_layer():
    found, _ = replay(vanishing_gradient(), sampled(net(first=dict(grad_norm=5e-6)), samples=3))
    assert len(found) == 1
    finding = found[0]
    assert (finding.step, finding.severity, finding.where) == (50, Severity.WARNING, "conv.weight")
    assert finding.evidence["rule"] == "autotrainer_ratio"
    assert finding.evidence["autotrainer_ratio"]["conv.weight"] == pytest.approx(5e-4)
    assert finding.evidence["last_layer"] == "fc2.weight"


def test_two_samples_are_not_enough_and_a_healthy_sample_resets_the_count():
    vanishing = net(first=dict(grad_norm=5e-6))
    stream = sampled(vanishing, 2) + [StepStats(step=50, lrs=(0.01,), layers=net())] + [
        StepStats(step=75 + 25 * i, lrs=(0.01,), layers=vanishing) for i in range(2)]
    assert replay(vanishing_gradient(), stream)[0] == []


def test_a_small_first_norm_with_a_small_last_norm_is_not_vanishing():
    # ||G_first|| <= 1e-4 but the ratio is 0.1: the whole network is quiet, not the first layer.
    found, _ = replay(vanishing_gradient(), sampled(net(first=dict(grad_norm=1e-6), last=dict(grad_norm=1e-5)), 5))
    assert found == []


def test_persisting_vanishing_stays_one_warning():
    # The ladder (docs/severity.md): layers that do not learn harm the run (WARNING); they do not break it (ERROR).
    found, _ = replay(vanishing_gradient(), sampled(net(first=dict(grad_norm=1e-7)), samples=15))
    assert [(f.step, f.severity) for f in found] == [(50, Severity.WARNING)]


def test_sagemaker_abs_mean_names_the_earliest_vanishing_tensor():
    layers = net(middle=dict(grad_abs_mean=5e-8), last=dict(grad_abs_mean=1e-8))
    found, _ = replay(vanishing_gradient(), sampled(layers, 3, every=1))
    assert [(f.step, f.where, f.evidence["rule"]) for f in found] == [(2, "fc1.weight", "grad_abs_mean")]
    assert set(found[0].evidence["grad_abs_mean"]) == {"fc1.weight", "fc2.weight"}


def test_sparse_and_all_zero_gradients_are_not_vanishing():
    sparse = dict(grad_abs_mean=5e-8, zero_grad_fraction=0.999)  # 5e-5 on the rows the batch touched
    dead = dict(grad_abs_mean=0.0, grad_norm=0.0, zero_grad_fraction=1.0, update_ratio=0.0)
    assert replay(vanishing_gradient(), sampled(net(middle=sparse, last=dead | dict(grad_norm=1e-2)), 5))[0] == []


def test_biases_are_not_judged():
    # A bias before a BatchNorm has an exactly-zero or tiny gradient; that is not a vanishing gradient.
    assert replay(vanishing_gradient(), sampled(net(bias=dict(grad_abs_mean=1e-9, update_ratio=1e-10)), 5))[0] == []


def test_tiny_updates_fire_when_the_learning_rate_is_not_tiny():
    found, _ = replay(vanishing_gradient(), sampled(net(last=dict(update_ratio=1e-9)), 3))
    assert [(f.step, f.where, f.evidence["rule"]) for f in found] == [(50, "fc2.weight", "update_ratio")]


def test_tiny_updates_under_a_learning_rate_decayed_to_zero_are_not_vanishing():
    tiny = net(first=dict(update_ratio=1e-10), middle=dict(update_ratio=1e-10), last=dict(update_ratio=1e-10))
    stream = sampled(net(), 2, lr=0.1) + [StepStats(step=50 + s, lrs=(1e-5,), layers=tiny) for s in range(10)]
    assert replay(vanishing_gradient(), stream)[0] == []


def test_tiny_updates_after_a_skipped_step_are_not_vanishing():
    tiny = net(last=dict(update_ratio=0.0))
    stream = []
    for step in range(10):
        stream.append(StepStats(step=2 * step, lrs=(0.01,), applied=False))
        stream.append(StepStats(step=2 * step + 1, lrs=(0.01,), layers=tiny))
    assert replay(vanishing_gradient(), stream)[0] == []


def test_re_arms_after_three_clear_samples():
    vanishing, healthy = net(first=dict(grad_norm=1e-7)), net()
    layers = [vanishing] * 3 + [healthy] * 3 + [vanishing] * 3
    stream = [StepStats(step=i, lrs=(0.01,), layers=l) for i, l in enumerate(layers)]
    assert [f.step for f in replay(vanishing_gradient(), stream)[0]] == [2, 8]


def test_non_finite_gradients_are_skipped():
    stream = [StepStats(step=i, lrs=(0.01,), grads_finite=False,
                        layers=net(first=dict(grad_norm=float("nan"), grad_abs_mean=float("nan")),
                                   last=dict(update_ratio=float("inf"))))
              for i in range(10)]
    assert replay(vanishing_gradient(), stream)[0] == []


@pytest.mark.parametrize("layer_every", [1, 25])
def test_seed003_streams_never_fire(layer_every):
    for name in ("healthy", "exploding"):
        assert replay(vanishing_gradient(), seed003_stream(name, layer_every=layer_every))[0] == []


def test_tiny_gradients_of_a_converged_network_are_not_vanishing():
    tiny = net(first=dict(grad_abs_mean=1e-9, update_ratio=1e-9), middle=dict(grad_abs_mean=1e-9))
    losses = np.geomspace(0.05, 1e-6, 400)  # seed 002's calm phase: the loss itself is ~0
    stream = [StepStats(step=i, loss=float(l), lrs=(0.01,), layers=tiny if i >= 350 else net())
              for i, l in enumerate(losses)]
    assert replay(vanishing_gradient(), stream)[0] == []
    # The same gradients while the loss has not moved from its start are vanishing.
    stuck = [StepStats(step=s.step, loss=0.05, lrs=s.lrs, layers=s.layers) for s in stream]
    assert [(f.step, f.severity, f.evidence["rule"]) for f in replay(vanishing_gradient(), stuck)[0]] == [
        (352, Severity.WARNING, "grad_abs_mean")]  # no ERROR on the ladder: layers not learning is harm


def test_tiny_gradients_after_the_loss_fell_below_a_tenth_of_its_start_are_info():
    # The corpus' fixed SRCNN (SGD at lr 0.1): 0.25 -> 0.014 in 25 steps, then mean |g| ~1e-8 in its first conv.
    tiny = net(first=dict(grad_abs_mean=1e-8, update_ratio=2e-6), middle=dict(grad_abs_mean=1.5e-8))
    losses = np.concatenate([np.geomspace(0.25, 0.014, 25), np.full(375, 0.014)])
    stream = [StepStats(step=i, loss=float(l), lrs=(0.1,), layers=tiny if i % 25 == 0 and i else ())
              for i, l in enumerate(losses)]
    found = replay(vanishing_gradient(), stream)[0]
    assert [(f.step, f.severity, f.evidence["rule"]) for f in found] == [(75, Severity.INFO, "grad_abs_mean")]
    assert 0.05 < found[0].evidence["loss_to_start"] < 0.1  # smoothed: it lags the loss a little
    # Should the loss climb back above a tenth of its start, the same gradients harm the run.
    climbing = stream + [StepStats(step=400 + i, loss=0.2, lrs=(0.1,), layers=tiny if i % 25 == 0 else ())
                         for i in range(200)]
    assert [f.severity for f in replay(vanishing_gradient(), climbing)[0]] == [Severity.INFO, Severity.WARNING]
