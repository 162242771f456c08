"""``grad_scaler``: streams for the rules, and real float16 autocast runs with a ``torch.amp.GradScaler`` on CPU."""
from __future__ import annotations

import doctest
import importlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import trainguard
from trainguard.core.detector import replay
from trainguard.core.detectors.grad_scaler import grad_scaler
from trainguard.core.findings import Severity
from trainguard.core.stats import StepStats

torch.set_num_threads(1)


def amp_steps(skips, scales):
    return [StepStats(step=i, loss=1.0, loss_scale=s, scaler_skipped=k) for i, (k, s) in enumerate(zip(skips, scales))]


def test_docstring_example():
    assert doctest.testmod(importlib.import_module("trainguard.core.detectors.grad_scaler")).failed == 0


def test_a_calibration_at_the_start_then_one_skip_per_growth_interval_is_routine():
    # GradScaler from 2**24 down to 2**12 (12 skips in a row), then a skip each time it tries to grow back.
    scales = [2.0 ** (24 - i) for i in range(12)] + [2.0 ** 12] * 3000
    skips = [True] * 12 + [i % 2000 == 1999 for i in range(3000)]
    assert replay(grad_scaler(), amp_steps(skips, scales))[0] == []


def test_a_scale_below_one_is_a_warning_once():
    scales = [2.0 ** (16 - i) for i in range(40)]
    found = replay(grad_scaler(), amp_steps([True] * 40, scales))[0]
    assert [(f.step, f.severity, f.evidence["rule"]) for f in found] == [(17, Severity.WARNING, "scale_floor")]


def test_steps_without_a_scaler_are_not_judged():
    assert replay(grad_scaler(), [StepStats(step=i, loss=1.0) for i in range(300)])[0] == []


def test_the_finding_re_arms_after_100_clean_steps():
    skips = [i % 2 == 0 for i in range(100)] + [False] * 200 + [i % 2 == 0 for i in range(100)]
    found = replay(grad_scaler(), amp_steps(skips, [64.0] * len(skips)))[0]
    assert [f.step for f in found] == [99, 398]  # 50 skips among steps 299-398


def _fp16_run(target_scale, steps=120):
    """An MLP under float16 autocast with a GradScaler (init 2**16), as PyTorch's AMP recipe writes it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu")
    guard = trainguard.Guard(model, optimizer, policy="observe", scaler=scaler)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(16, 8, generator=generator)
        y = x[:, :1] * target_scale
        with torch.autocast("cpu", dtype=torch.float16):
            loss = F.mse_loss(model(x).float(), y)
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        guard.step(loss, inputs=x, targets=y)
    guard.close()
    return guard.history


@pytest.mark.parametrize("target_scale, warned", [(1.0, False), (1e5, True)])
def test_real_float16_runs(target_scale, warned):
    """Targets of scale 1e5 under float16: the output layer's gradient overflows whatever the scale, the scaler
    skips every step and halves the scale below 1; the same run with standardized targets calibrates and trains."""
    history = _fp16_run(target_scale)
    assert any(s.loss_scale is not None for s in history)
    found = replay(grad_scaler(), history)[0]
    assert bool(found) == warned, [f.message for f in found]
    if warned:
        assert found[0].evidence["rule"] == "scale_floor" and found[0].step <= 20
    else:
        assert sum(s.scaler_skipped for s in history) < 10
