"""``guard.diagnose()`` on real, small PyTorch runs (seed 003's MLP, a second each)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import trainguard  # noqa: E402
from trainguard.core.causes import cause_doc_link  # noqa: E402


def _seed003(standardized: bool, epochs: int):
    rng = np.random.RandomState(1)
    x = rng.standard_normal((500, 20))
    coef = np.zeros(20)
    coef[:10] = 100 * rng.uniform(size=10)  # make_regression: targets on a scale of hundreds
    y = x @ coef + 0.1 * rng.standard_normal(500)
    if standardized:
        y = (y - y.mean()) / y.std()
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32).unsqueeze(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 25), nn.ReLU(), nn.Linear(25, 1))
    nn.init.kaiming_uniform_(model[0].weight, nonlinearity="relu")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    guard = trainguard.Guard(model, optimizer)
    generator = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        order = torch.randperm(500, generator=generator)
        for start in range(0, 500, 32):
            idx = order[start:start + 32]
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x[idx]), y[idx])
            loss.backward()
            guard.step(loss, batch_size=len(idx), inputs=x[idx], targets=y[idx], epoch=epoch)
            if not torch.isfinite(loss):
                guard.close()
                return guard
    guard.close()
    return guard


def test_seed003_is_an_exploding_gradient_with_unscaled_targets_contributing():
    causes = _seed003(standardized=False, epochs=3).diagnose()
    assert causes[0].code == "exploding_gradient"
    assert causes[0].evidence["first_non_finite"] == "0.weight"
    codes = [c.code for c in causes]
    assert "unscaled_data" in codes
    targets = causes[codes.index("unscaled_data")].evidence["targets"]
    assert 100 < targets["std"] < 300
    assert "clip_grad_norm_" in str(causes[0].fix) and str(causes[0].fix).endswith(cause_doc_link("exploding_gradient"))


def test_seed003_on_standardized_targets_has_no_cause():
    assert _seed003(standardized=True, epochs=20).diagnose() == []
