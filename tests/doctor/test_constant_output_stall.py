"""A stalled loss that scatters only by its batches (uncorrelated from one point to the next) is what a network
with a constant output gives on a small regression batch: the stall's candidates (dead units, vanishing gradients,
saturation, with an LR too high among them), not the overshooting steps that a wandering, correlated loss shows
(pytorch/benchmark#1927: DLRM's output ReLU dead from a bias of -2)."""
from __future__ import annotations

import numpy as np
import pytest

from trainguard.doctor import diagnose_file

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from _minibatch import minibatch_losses, step_loss_lr_csv  # noqa: E402


def _dead_output_regression(steps: int = 400) -> np.ndarray:
    """Clicks (28% positives) regressed with MSE through a ReLU output whose bias starts at -3: every output 0."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4096, 13, generator=g)
    y = ((x[:, :3].sum(dim=1) + 0.5 * torch.randn(4096, generator=g)) > 1.0).float()[:, None]
    model = nn.Sequential(nn.Linear(13, 32), nn.ReLU(), nn.Linear(32, 1), nn.ReLU())
    with torch.no_grad():
        model[2].bias.fill_(-3.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    return np.array(minibatch_losses(model, opt, x, y, nn.functional.mse_loss, 128, steps, g))


def test_a_dead_output_scattering_by_its_batches_is_uncertain_not_the_learning_rate(tmp_path):
    losses = _dead_output_regression()
    assert np.std(np.log(losses)) > 0.05  # far from quiet: a batch of 128 clicks scatters its share of positives
    result = diagnose_file(step_loss_lr_csv(tmp_path / "dead.csv", losses, 0.01))
    assert "plateau" in [f.code for f in result.findings]
    assert result.cause == "uncertain"
    assert {"dead_relu", "lr_too_high"} <= {c["code"] for c in result.causes[0].evidence["candidates"]}


def test_a_stalled_loss_that_wanders_is_still_read_as_overshooting_steps(tmp_path):
    # The same scatter, correlated from point to point (an AR(1) with 0.6): the model itself moves the loss.
    rng = np.random.default_rng(0)
    wander = np.zeros(400)
    for i in range(1, 400):
        wander[i] = 0.6 * wander[i - 1] + rng.normal(0, 0.12)
    result = diagnose_file(step_loss_lr_csv(tmp_path / "wander.csv", 2.0 * np.exp(wander), 1.0))
    assert result.cause == "lr_too_high" and result.causes[0].confidence == 0.5
