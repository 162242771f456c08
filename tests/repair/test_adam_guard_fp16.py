"""adam_guard on float16 Adam (issue 16: "No false repairs: every healthy program ... ends bitwise equal to an
unguarded run under auto").

A model trained in float16 with Adam at epsilon 1e-4 (the float16 reports' fix: the PyTorch forum's "Adam+Half
Precision = NaNs?", afiaka87/glide-finetune#6) trains well, but its second moments ``0.001 g^2`` are subnormal or 0
in float16 for ``|g| < 0.25``: g / max(sqrt(v), eps) there is g / eps, 10 to 20 at the first step, which adam_guard
read as Wortsman et al.'s lagging v and capped for 1000 steps. It reads the lag RMS now: over the entries whose v
the dtype holds."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import trainguard
from _repair_runs import train_float16_regression
from trainguard.adapters.torch.collect import adam_moments

torch.set_num_threads(1)


def _fp16_run(policy: str | None, steps: int = 200):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 1)).half()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-4)
    x = torch.randn(512, 16)
    losses, guard = train_float16_regression(model, optimizer, x, 0.5 * torch.tanh(x @ (torch.randn(16, 1) / 4)),
                                             policy, steps)
    return losses, [p.detach().clone() for p in model.parameters()], guard


def test_float16_adam_at_the_reports_epsilon_is_left_alone_under_auto():
    unguarded, weights, _ = _fp16_run(None)
    assert sum(unguarded[-20:]) < 0.3 * sum(unguarded[:20])  # a healthy run: it learns
    losses, guarded, guard = _fp16_run("auto")
    # before: adam_guard at step 0 (update RMS ~20 read from underflowed v), capped for the rest of the run
    assert [a.kind for a in guard.actions] == []
    assert losses == unguarded and all(torch.equal(a, b) for a, b in zip(guarded, weights))


def test_the_lag_rms_leaves_out_the_second_moments_float16_cannot_hold():
    # one step of Adam (t = 1, v = 0.001 g^2): g = 1e-3 underflows to v = 0, g = 1 is held (v = 1e-3, normal)
    grad = torch.tensor([1e-3, 1e-3, 1.0, 0.0], dtype=torch.float16)
    v = (0.001 * grad.float() ** 2).half()
    assert v[0] == 0 and v[2] > torch.finfo(torch.float16).tiny
    rms, _, _, lag = adam_moments(grad, v, 1.0, 0.999, 1e-4).tolist()
    assert rms == pytest.approx(math.sqrt((10.0 ** 2 + 10.0 ** 2 + 1.0) / 4), rel=1e-3)  # g / eps where v is 0
    assert lag == pytest.approx(math.sqrt(1.0 / 2), rel=1e-3)  # the held entry and the one without a gradient
    # a held v that lags: the gradient grew 100x over a v that stayed (Wortsman et al.'s case), counted
    lagging = torch.tensor([1e-2, 1e-3], dtype=torch.float16)
    _, _, _, lag = adam_moments(torch.tensor([1.0, 1e-3], dtype=torch.float16), lagging, 1000.0, 0.999, 1e-4).tolist()
    correction = 1 - 0.999 ** 1000
    assert lag == pytest.approx(math.sqrt((1.0 / (1e-2 / correction) + 1e-6 / (1e-3 / correction)) / 2), rel=1e-2)
    assert lag > 5  # adam_guard's threshold
    # float32 holds every v: the lag RMS is the RMS, bitwise
    grad32 = torch.tensor([1e-3, 0.5, 0.0, 2.0])
    values = adam_moments(grad32, 0.001 * grad32 ** 2, 1.0, 0.999, 1e-8)
    assert values[3].item() == values[0].item()


def test_keras_reads_the_lag_rms_from_the_variables_dtype(tmp_path):
    # Keras hands the host float32 copies of float16 variables (torch backend): the dtype is the variable's
    keras = pytest.importorskip("keras")

    from trainguard.io.runlog import read_runlog
    from trainguard.keras import Guard

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(256, 16)).astype("float16")
    y = (0.1 * x[:, :1]).astype("float16")
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="tanh", dtype="float16"),
                              keras.layers.Dense(1, dtype="float16")])
    model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-4), loss="mse")
    guard = Guard(policy="auto", log=tmp_path / "run.jsonl", preset="full")
    model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[guard])
    first = read_runlog(tmp_path / "run.jsonl").steps[0]
    worst = max(first.layers, key=lambda layer: layer.adam_update_rms)
    assert worst.adam_update_rms > 5 and worst.adam_lag_rms <= 1.5  # Adam's first step over the v float16 holds
    assert [a.kind for a in guard.actions] == []



def test_a_float16_classifier_at_the_reports_epsilon_gets_no_adam_finding_and_no_cause():
    # the adam_update detector reads the lag RMS too: an underflowed v is the dtype, not Adam's epsilon at fault
    torch.manual_seed(0)
    centres = torch.randn(24, 32)  # 3 clusters a class, overlapping
    clusters = torch.randint(0, 24, (4096,))
    x, labels = (centres[clusters] + 1.1 * torch.randn(4096, 32)).half(), clusters % 8
    model = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 8)).half()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-4)
    guard = trainguard.Guard(model, optimizer, policy="observe")
    losses = []
    for step in range(300):
        batch = slice(step * 64 % 4096, step * 64 % 4096 + 64)
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x[batch]).float(), labels[batch])
        loss.backward()
        guard.step(loss)
        losses.append(loss.item())
    guard.close()
    assert sum(losses[-30:]) < 0.1 * sum(losses[:30])  # it trains
    assert [f for f in guard.findings if f.code == "adam_update_rms"] == []
    assert "adam_epsilon" not in [c.code for c in guard.diagnose()]
