"""diff on synthetic run logs with a planted difference: the first step, the first quantity and the cause."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace

import pytest
from _diff_runs import PARAMETERS, healthy_step, scaled_layers, write_run

import trainguard
from trainguard.core.stats import BufferStats
from trainguard.diff import DEFAULT_RTOL, DiffResult, diff
from trainguard.diff.compare import ForwardOrder, relative_difference


def test_identical_runs_agree(tmp_path):
    result = diff(write_run(tmp_path / "a.jsonl"), write_run(tmp_path / "b.jsonl"))
    assert result.verdict == "agree" and result.exit_code == 0
    assert result.first_divergence is None and result.cause.code == "none"
    assert result.first_inexact_step is None
    assert len(result.compared_steps) == 12 and result.layer_steps == 12


def test_public_api_is_the_package_and_returns_the_json_structure(tmp_path):
    a, b = write_run(tmp_path / "a.jsonl"), write_run(tmp_path / "b.jsonl", edit=_eval_mode_from(3))
    result = trainguard.diff(a, b)
    assert isinstance(result, DiffResult)
    document = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert document["schema"] == "trainguard.diff" and document["verdict"] == "part"
    assert document["first_divergence"]["step"] == 3 and document["cause"]["code"] == "bn_inference_mode"


def _eval_mode_from(start: int):
    """Run B: BatchNorm in eval mode from ``start``; its running statistics stop moving, the loss changes."""
    frozen = healthy_step(start - 1).buffers if start else (
        BufferStats("bn.running_mean", 0.0, 0.0), BufferStats("bn.running_var", 1.0, 4.0),
        BufferStats("bn.num_batches_tracked", 0.0, 0.0))

    def edit(stats):
        if stats.step < start:
            return stats
        return scaled_layers(replace(stats, eval_mode_modules=("bn",), buffers=frozen, loss=stats.loss * 1.3), 2.0)
    return edit


def test_bn_inference_mode_is_found_at_the_step_it_starts(tmp_path):
    result = diff(write_run(tmp_path / "a.jsonl"), write_run(tmp_path / "b.jsonl", edit=_eval_mode_from(4)))
    assert result.verdict == "part" and result.exit_code == 1
    assert result.first_divergence.step == 4
    assert result.first_divergence.category == "mode" and result.first_divergence.where == "bn"
    assert result.cause.code == "bn_inference_mode" and result.cause.evidence["run"] == "B"
    categories = [d.category for d in result.differences]
    assert categories == sorted(categories, key=["mode", "bn_stats", "loss", "gradient"].index)
    assert result.first_step_by_category["gradient"] == 4 and result.first_step_by_category["data"] is None


def test_frozen_running_statistics_name_bn_inference_mode_without_a_recorded_mode(tmp_path):
    """Keras records no module mode reliably: moving statistics that never move are the signal."""
    def no_modes(stats):
        return replace(stats, eval_mode_modules=None)
    eval_edit = _eval_mode_from(0)
    a = write_run(tmp_path / "a.jsonl", edit=no_modes)
    b = write_run(tmp_path / "b.jsonl", edit=lambda s: no_modes(eval_edit(s)))
    result = diff(a, b)
    assert result.first_divergence.step == 0
    assert result.first_divergence.category == "bn_stats"
    assert result.first_divergence.where.startswith("bn.")
    assert result.cause.code == "bn_inference_mode"


def test_other_batches_are_a_data_order_difference_not_a_model_difference(tmp_path):
    def reshuffled(stats):  # another order of the same batches; everything downstream differs as a consequence
        t = stats.step
        if t == 0:  # batch 0 comes first in both orders
            return stats
        return scaled_layers(replace(stats, batch_fingerprint=f"batch{(t * 5) % 12:04d}", loss=stats.loss * 1.1,
                                     buffers=tuple(replace(b, mean=b.mean * 1.2) for b in stats.buffers)), 1.5)
    result = diff(write_run(tmp_path / "a.jsonl"), write_run(tmp_path / "b.jsonl", edit=reshuffled))
    assert result.cause.code == "data_order"
    assert result.first_divergence.category == "data" and result.first_divergence.step == 1  # step 0: batch 0 both
    assert result.cause.evidence["same_batches_reordered"] is True


@pytest.mark.parametrize("planted, code, category", [
    (lambda s: replace(s, lrs=(0.05,)) if s.step >= 6 else s, "lr_schedule", "lr"),
    (lambda s: replace(s, batch_size=64, loss=s.loss * 0.9) if s.step >= 2 else s, "batch_size", "batch_size"),
    (lambda s: scaled_layers(replace(s, loss=s.loss * 32, grad_norm=s.grad_norm * 32), 32),
     "batch_size_dependent_loss", "loss"),
    (lambda s: scaled_layers(replace(s, loss=s.loss * 2.5, grad_norm=s.grad_norm * 2.5), 2.5), "loss_scale", "loss"),
    (lambda s: replace(s, loss=s.loss * 1.01) if s.step >= 3 else s, "computation", "loss"),
    (lambda s: scaled_layers(s, 1.2, ("weight_norm",)), "initialization", "weight"),
    (lambda s: scaled_layers(s, 1.5, ("update_ratio",)) if s.step >= 5 else s, "optimizer", "weight"),
])
def test_each_planted_difference_gets_its_cause(tmp_path, planted, code, category):
    result = diff(write_run(tmp_path / "a.jsonl"), write_run(tmp_path / "b.jsonl", edit=planted))
    assert result.cause.code == code, result.cause.message
    assert result.first_divergence.category == category


def test_first_layer_in_forward_order_within_the_first_category(tmp_path):
    def late_layer(stats):  # a gradient difference in fc2 only, then one in fc1 a step later
        layers = list(stats.layers)
        if stats.step >= 5:
            layers[4] = replace(layers[4], grad_norm=layers[4].grad_norm * 1.5)
        if stats.step >= 6:
            layers[0] = replace(layers[0], grad_norm=layers[0].grad_norm * 1.5)
        return replace(stats, layers=tuple(layers))
    result = diff(write_run(tmp_path / "a.jsonl"), write_run(tmp_path / "b.jsonl", edit=late_layer))
    assert result.first_divergence.step == 5 and result.first_divergence.where == "fc2.weight"
    first_steps = dict(result.layers)
    assert first_steps["fc2.weight"] == 5 and first_steps["fc1.weight"] == 6 and first_steps["fc1.bias"] is None


def test_rounding_below_tolerance_agrees_and_growing_drift_is_named(tmp_path):
    def rounding(stats):
        return scaled_layers(stats, 1 + 3e-7 * 1.5 ** stats.step)
    a = write_run(tmp_path / "a.jsonl", steps=12)
    assert diff(a, write_run(tmp_path / "b.jsonl", steps=12, edit=rounding)).verdict == "agree"
    drifted = diff(write_run(tmp_path / "a30.jsonl", steps=30),
                   write_run(tmp_path / "c.jsonl", steps=30, edit=rounding))
    assert drifted.verdict == "part" and drifted.cause.code == "numerical_drift"
    assert drifted.first_inexact_step == 0
    assert 3e-7 * 1.5 ** (drifted.first_divergence.step - 1) <= DEFAULT_RTOL * 1.01


def test_rtol_override(tmp_path):
    b = write_run(tmp_path / "b.jsonl", edit=lambda s: replace(s, loss=s.loss * 1.001))
    a = write_run(tmp_path / "a.jsonl")
    assert diff(a, b).verdict == "part"
    assert diff(a, b, rtol=1e-2).verdict == "agree"


def test_relative_difference_rules():
    assert relative_difference(1.0, 1.0) == 0.0
    assert relative_difference(math.nan, math.nan) == 0.0
    assert relative_difference(1.0, math.nan) == math.inf
    assert relative_difference(math.inf, -math.inf) == math.inf
    assert relative_difference(None, 1.0) is None
    assert relative_difference(1e-9, 2e-9, scale=1.0) == pytest.approx(1e-9)  # a near-zero value is not alone
    assert relative_difference(2.0, 1.0) == 0.5


def test_forward_order_puts_buffers_and_modules_with_their_parameters():
    order = ForwardOrder(PARAMETERS)
    names = ["fc2.weight", "bn.running_var", "bn", "fc1.bias", "extra_bn.running_mean"]
    assert order.sorted(names) == ["fc1.bias", "bn", "bn.running_var", "fc2.weight", "extra_bn.running_mean"]
    assert order.sorted(["bn.running_mean", "bn.bias", "bn.weight"]) == ["bn.weight", "bn.bias", "bn.running_mean"]
    keras = ForwardOrder(["seq/dense/kernel", "seq/batch_normalization/gamma", "seq/dense_1/kernel"])
    assert keras.sorted(["dense_1", "batch_normalization", "dense"]) == ["dense", "batch_normalization", "dense_1"]


def test_diff_imports_no_framework():
    code = ("import sys, trainguard.diff, trainguard.commands.diff, trainguard.diff.console; "
            "bad = [m for m in ('torch', 'keras', 'jax', 'tensorflow') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


KERAS_A = ("sequential/dense/kernel", "sequential/dense/bias", "sequential/dense_1/kernel", "sequential/dense_1/bias")
KERAS_B = ("sequential_1/dense_2/kernel", "sequential_1/dense_2/bias", "sequential_1/dense_3/kernel",
           "sequential_1/dense_3/bias")


def _named(names):
    def edit(stats):
        layers = tuple(replace(layer, name=name) for layer, name in zip(stats.layers, names))
        return replace(stats, layers=layers, buffers=(), eval_mode_modules=None)
    return edit


def test_keras_numbering_of_a_model_built_twice_is_matched_by_position(tmp_path):
    a = write_run(tmp_path / "a.jsonl", parameters=KERAS_A, edit=_named(KERAS_A))
    b = write_run(tmp_path / "b.jsonl", parameters=KERAS_B, edit=_named(KERAS_B))
    result = diff(a, b)
    assert result.verdict == "agree" and any("automatic numbering" in note for note in result.notes)
    late = write_run(tmp_path / "c.jsonl", parameters=KERAS_B,
                     edit=lambda s: scaled_layers(_named(KERAS_B)(s), 2.0) if s.step >= 2 else _named(KERAS_B)(s))
    parted = diff(a, late)
    assert parted.first_divergence.where == "sequential/dense/kernel"  # reported under A's name


@pytest.mark.parametrize("names_b", [
    ("sequential_1/dense_2/kernel", "sequential_1/dense_2/bias", "sequential_1/dense_2/kernel",
     "sequential_1/dense_3/bias"),  # one B layer would stand for two A layers
    ("sequential_1/conv_2/kernel", "sequential_1/conv_2/bias", "sequential_1/dense_3/kernel",
     "sequential_1/dense_3/bias"),  # another layer type
])
def test_names_that_are_not_a_renumbering_are_different_models(tmp_path, names_b):
    from trainguard.diff import DiffInputError

    a = write_run(tmp_path / "a.jsonl", parameters=KERAS_A, edit=_named(KERAS_A))
    b = write_run(tmp_path / "b.jsonl", parameters=names_b, edit=_named(names_b))
    with pytest.raises(DiffInputError, match="different models"):
        diff(a, b)
