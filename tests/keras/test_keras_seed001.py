"""Seed 001 in Keras: experiment 2 (inputs in [0, 4], not standardized: NaN) and experiment 3 (a deep sigmoid
stack: vanishing gradients, the model predicts a constant)."""
from __future__ import annotations

import math

import pytest

keras = pytest.importorskip("keras")

import trainguard.keras as tk  # noqa: E402

from _keras_seeds import seed001  # noqa: E402


def test_experiment2_unscaled_inputs_explode_and_are_diagnosed():
    guard = tk.Guard(policy="observe")
    losses = seed001(2, guard)
    assert not math.isfinite(losses[-1])
    codes = [f.code for f in guard.findings]
    assert "non_finite" in codes and "data_scale" in codes
    causes = [c.code for c in guard.diagnose()]
    assert "unscaled_data" in causes[:2]
    assert "Normalization" in str(guard.diagnose()[0].fix) or "standard" in str(guard.diagnose()[0].fix).lower()


def test_experiment2_auto_repairs():
    guard = tk.Guard(policy="auto")
    losses = seed001(2, guard)
    assert all(math.isfinite(v) for v in losses[1:])
    assert losses[-1] < 1.0  # y = x on [0, 4]: a finite, useful fit (the unguarded run is NaN)
    assert any(a.kind == "skip_step" for a in guard.actions)


def test_experiment3_sigmoid_stack_vanishes():
    guard = tk.Guard(policy="observe")
    seed001(3, guard)
    assert "output_collapse" in [f.code for f in guard.findings]
    assert any(s.activations for s in guard.history)  # the probe saw the sigmoid layers
    causes = guard.diagnose()
    vanishing = next(c for c in causes if c.code == "vanishing_gradient")
    assert vanishing.confidence >= 0.5
    assert "relu" in str(vanishing.fix).lower()
