"""Observe mode never changes the run: weights, buffers and RNG state end bitwise equal to an unguarded run's,
even through the guard's own forward when it locates a NaN."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import trainguard

from _guard_runs import same_tensors, seed003_data, train


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(20, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 16),
                         nn.Tanh(), nn.Linear(16, 1))


@pytest.mark.parametrize("make_optimizer", [
    lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9),
    lambda p: torch.optim.AdamW(p, lr=1e-3),
], ids=["sgd-momentum", "adamw"])
@pytest.mark.parametrize("preset", ["standard", "full"])
def test_observe_is_bitwise_identical_to_an_unguarded_run(make_optimizer, preset):
    x, y = seed003_data(standardized=True)
    bare, guarded = _net(1), _net(1)
    bare_opt, guarded_opt = make_optimizer(bare.parameters()), make_optimizer(guarded.parameters())
    torch.manual_seed(5)
    train(bare, bare_opt, x, y, epochs=3)
    bare_rng = torch.get_rng_state()
    torch.manual_seed(5)
    with trainguard.Guard(guarded, guarded_opt, policy="observe", preset=preset) as guard:
        train(guarded, guarded_opt, x, y, epochs=3, guard=guard)
    assert same_tensors(bare, guarded)
    assert torch.equal(bare_rng, torch.get_rng_state())
    assert guard.step_count == 48
    assert any(s.layers for s in guard.history) and any(s.activations for s in guard.history)


def _first_non_finite_child(model: nn.Sequential, x: torch.Tensor) -> str | None:
    """The test's own answer: run the Sequential's children one by one."""
    with torch.no_grad(), torch.random.fork_rng():
        for name, child in model.named_children():
            x = child(x)
            if not torch.isfinite(x).all():
                return name
    return None


def test_locating_a_nan_leaves_rng_and_batchnorm_untouched_and_names_the_module():
    x, y = seed003_data(standardized=True)
    expected = {}

    def poisoner(model: nn.Sequential):
        def poison(step: int, xb: torch.Tensor) -> torch.Tensor:
            if step != 5:
                return xb
            xb = torch.full_like(xb, 3e38)  # finite, but a Linear layer's sums overflow
            expected.setdefault("module", _first_non_finite_child(copy.deepcopy(model), xb))
            return xb
        return poison

    bare, guarded = _net(3), _net(3)
    bare_opt = torch.optim.SGD(bare.parameters(), lr=0.01)
    guarded_opt = torch.optim.SGD(guarded.parameters(), lr=0.01)
    torch.manual_seed(7)
    train(bare, bare_opt, x, y, epochs=1, alter_batch=poisoner(bare))
    bare_rng = torch.get_rng_state()
    torch.manual_seed(7)
    with trainguard.Guard(guarded, guarded_opt, policy="observe") as guard:
        train(guarded, guarded_opt, x, y, epochs=1, guard=guard, alter_batch=poisoner(guarded))
    assert same_tensors(bare, guarded)
    assert torch.equal(bare_rng, torch.get_rng_state())
    non_finite = [f for f in guard.findings if f.code == "non_finite"]
    assert [f.step for f in non_finite] == [5]
    assert expected["module"] is not None
    assert guard.history[5].first_nonfinite_module == expected["module"]
    assert non_finite[0].where == expected["module"]


def test_locate_non_finite_on_request():
    model = _net(3)
    guard = trainguard.Guard(model, torch.optim.SGD(model.parameters(), lr=0.1), policy="observe")
    x = torch.randn(8, 20)
    assert guard.locate_non_finite(x) is None
    assert guard.locate_non_finite(x.masked_fill(x > 1, float("nan"))) == "(inputs)"
    with torch.no_grad():
        model[4].weight[0, 0] = float("inf")
    assert guard.locate_non_finite(x) == "4"
    guard.close()
