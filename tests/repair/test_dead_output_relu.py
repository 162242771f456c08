"""A dead ReLU on the model's output (jvargasmu/population_estimation#68, the DeepLearning.AI 'loss values do not
change' thread): ReDo's trial revives it under ``auto`` (trainguard/core/policies/redo.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import trainguard
from trainguard.adapters.torch.effector import recycle_dormant_units

torch.set_num_threads(1)


def _dead_output_model() -> nn.Sequential:
    """Linear(4, 16) -> ReLU -> Linear(16, 1) -> ReLU whose output unit is negative on every input: its incoming
    weights and bias negative, fed by a ReLU layer's non-negative outputs."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1), nn.ReLU())
    with torch.no_grad():
        model[2].weight.copy_(-model[2].weight.abs())
        model[2].bias.fill_(-0.5)
    return model


def _fit(policy, steps: int = 560):
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.uniform(0.0, 1.0, size=(512, 4)).astype(np.float32))
    y = x @ torch.tensor([[1.0], [2.0], [-1.0], [0.5]]) + 1.0  # positive: a ReLU output can fit them
    model = _dead_output_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    guard = trainguard.Guard(model, optimizer, policy=policy) if policy is not None else None
    generator = torch.Generator().manual_seed(2)
    losses = []
    for step in range(steps):
        idx = torch.randint(0, 512, (32,), generator=generator)
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x[idx]), y[idx])
        loss.backward()
        guard.step(loss) if guard is not None else optimizer.step()
        losses.append(loss.item())
    if guard is not None:
        guard.close()
    return float(np.mean(losses[-50:])), guard


def test_a_recycled_output_relu_is_drawn_non_negative_and_fires_on_every_input():
    model = _dead_output_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.rand(64, 4)
    nn.functional.mse_loss(model(x), torch.ones(64, 1)).backward()
    assert torch.all(model[2].weight.grad == 0)  # dead: no gradient
    rng = torch.get_rng_state()
    done = recycle_dormant_units(model, optimizer, ("3",), seed=5)
    assert done == {"units": 1, "layers": ["3"]} and torch.equal(torch.get_rng_state(), rng)
    bound = 1 / 16 ** 0.5
    assert torch.all((model[2].weight >= 0) & (model[2].weight <= bound)) and 0 <= float(model[2].bias.detach()) <= bound
    with torch.no_grad():
        assert torch.all(model(torch.rand(256, 4)) > 0)


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_a_recycled_hidden_relu_keeps_the_symmetric_draw(seed):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    with torch.no_grad():
        model[0].weight.fill_(-1.0)
        model[0].bias.fill_(-1.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.rand(16, 3)).sum().backward()
    recycle_dormant_units(model, optimizer, ("1",), seed=seed)
    assert torch.any(model[0].weight < 0) and torch.any(model[0].weight > 0)


def test_a_dead_output_relu_is_revived_by_a_kept_redo_trial_and_its_steps_are_not_skipped():
    dead, _ = _fit("observe")
    revived, guard = _fit("auto")
    recycled = next(a for a in guard.actions if a.kind == "recycle_dormant")
    assert recycled.effect["units"] == 1
    # the layer had no gradient at all before: the outlier skip's history of norms is 0, every revived step an
    # "outlier" of it; the trial lifts it as it lifts the clip
    assert not any(a.kind in ("skip_step", "clip") for a in guard.actions)
    trial = next(a for a in guard.actions if a.kind == "trial")
    assert trial.params["repair"] == "recycle_dormant" and trial.effect["kept"] is True
    assert revived < 0.1 * dead
