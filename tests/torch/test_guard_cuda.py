"""On a GPU the guard must not sync with the host between fetches (skipped where there is no CUDA device)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import trainguard

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_no_host_sync_between_fetches_and_the_same_statistics_after_them():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 1)).cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    guard = trainguard.Guard(model, optimizer, policy="observe", preset="standard", fetch_every=5)
    x, y = torch.randn(32, 20, device="cuda"), torch.randn(32, 1, device="cuda")
    for step in range(30):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        quiet = (step + 1) % 5 != 0 and step % 25 != 0  # neither a fetch nor a sampled step
        torch.cuda.set_sync_debug_mode("error" if quiet else "default")
        try:
            guard.step(loss, batch_size=32)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    guard.close()
    assert [s.step for s in guard.history] == list(range(30))
    assert all(s.grad_norm is not None and s.grad_norm > 0 for s in guard.history)


def test_safe_skips_a_nan_step_on_the_device_without_a_sync():
    """The default policy decides on the device and hands a fused optimizer the skip as AMP's ``found_inf``; the
    session (detectors, policy, effects, run log) runs only at the fetches."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 1)).cuda()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    guard = trainguard.Guard(model, optimizer, fetch_every=5)  # policy "safe", the default
    x, y = torch.randn(32, 20, device="cuda"), torch.randn(32, 1, device="cuda")
    for step in range(30):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        if step == 7:
            model[0].weight.grad[0, 0] = float("nan")
        quiet = (step + 1) % 5 != 0 and step % 25 != 0
        torch.cuda.set_sync_debug_mode("error" if quiet else "default")
        try:
            guard.step(loss, batch_size=32)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    guard.close()
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    assert [(a.kind, a.step) for a in guard.actions] == [("skip_step", 7)]
    assert [s.applied for s in guard.history][6:9] == [True, False, True]
    assert guard.history[7].first_nonfinite_grad == "0.weight"
