"""The overhead budget's schedule (trainguard.core.budget) on injected step and self-times: no clock, no flakes."""
from __future__ import annotations

import math

import pytest

from trainguard.core.budget import (DEFAULT_CAP, WARMUP_STEPS, budget_init, budget_update, layers_due, light_steps,
                                    required_stride)

MLP = dict(step_s=3.5e-3, full_s=520e-6, light_s=30e-6, layers_s=3.1e-3)  # the benchmark's MLP, CPU
CNN = dict(step_s=60e-3, full_s=900e-6, light_s=30e-6, layers_s=7e-3)  # the benchmark's CNN: the guard is cheap


def run(state, steps, step_s, full_s, light_s, layers_s, jitter=None):
    """Drives the schedule as the torch guard does: a full step (with the per-layer statistics when due), then
    the light steps it allows, their mean times reported at once. Returns the final state and each step's kind."""
    kinds, layers = [], True  # the first step samples the layers (the preset's cadence at step 0)
    while len(kinds) < steps:
        kind = "layers" if layers else "full"
        noise = 1.0 if jitter is None else jitter(len(kinds))
        state = budget_update(state, kind, (layers_s if layers else full_s) * noise, step_s * noise)
        kinds.append(kind)
        left, layers = light_steps(state), layers_due(state)
        if left:
            state = budget_update(state, "light", light_s * noise, step_s * noise, count=left)
            kinds += ["light"] * left
    return state, kinds[:steps]


def mean_self(kinds, full_s, light_s, layers_s):
    cost = {"full": full_s, "light": light_s, "layers": layers_s}
    return sum(cost[k] for k in kinds) / len(kinds)


def test_the_mean_self_time_stays_within_the_budget_when_a_stride_under_the_cap_reaches_it():
    state, kinds = run(budget_init(0.02, cap=64), 2000, **MLP)
    assert 1 < state.stride < 64
    after_warmup = kinds[200:]  # its edges cut a per-layer period: within 2% of the bound
    assert mean_self(after_warmup, MLP["full_s"], MLP["light_s"], MLP["layers_s"]) <= 1.02 * 0.02 * MLP["step_s"]
    # the smallest such stride: one less would exceed the budget
    full, light, layers = MLP["full_s"], MLP["light_s"], MLP["layers_s"]
    s = state.stride - 1
    assert light + (full - light) / s + (layers - full) / (25 * s) > 0.02 * MLP["step_s"]


def test_the_cap_bounds_the_stride_however_dear_the_guard():
    state, kinds = run(budget_init(0.02), 1000, **dict(MLP, full_s=2e-3))  # the budget is out of reach
    assert state.stride == DEFAULT_CAP
    full = [i for i, k in enumerate(kinds) if k != "light"]
    assert max(b - a for a, b in zip(full, full[1:])) == DEFAULT_CAP  # a full step at least every cap steps


def test_a_step_long_relative_to_the_guard_is_measured_in_full_every_step_with_the_presets_layer_cadence():
    state, kinds = run(budget_init(0.02), 300, **CNN)
    assert state.stride == 1 and "light" not in kinds
    assert [i for i, k in enumerate(kinds) if k == "layers"] == list(range(0, 300, 25))


def test_warmup_steps_are_full():
    _, kinds = run(budget_init(0.02), 50, **MLP)
    assert "light" not in kinds[:WARMUP_STEPS] and "light" in kinds


def test_trouble_makes_the_next_cap_steps_full():
    state, _ = run(budget_init(0.02), 300, **MLP)
    assert light_steps(state) > 0
    state = budget_update(state, "full", MLP["full_s"], MLP["step_s"], trouble=True)
    for _ in range(DEFAULT_CAP - 1):
        assert light_steps(state) == 0
        state = budget_update(state, "full", MLP["full_s"], MLP["step_s"])
    assert light_steps(state) == 0
    state = budget_update(state, "full", MLP["full_s"], MLP["step_s"])
    assert light_steps(state) > 0


def test_timing_noise_and_a_pause_do_not_swing_the_stride():
    state, _ = run(budget_init(0.02, cap=64), 1000, **MLP)
    settled = state.stride
    state, _ = run(state, 1000, **MLP, jitter=lambda i: 1.0 + 0.1 * math.sin(i))
    assert abs(state.stride - settled) <= 1
    paused = budget_update(state, "full", MLP["full_s"], 100 * MLP["step_s"])  # an evaluation between two steps
    assert paused.stride == state.stride


def test_the_stride_shrinks_when_steps_grow_long():
    state, _ = run(budget_init(0.02, cap=64), 1000, **MLP)
    assert state.stride > 1
    state, kinds = run(state, 3000, **dict(MLP, step_s=60e-3))
    assert state.stride == 1 and "light" not in kinds[-100:]


def test_required_stride_is_one_until_times_are_known():
    assert required_stride(budget_init(0.02), 0.02) == 1


@pytest.mark.parametrize("share", [0, 1, -0.1, 2, "0.02", True, None])
def test_a_budget_outside_0_1_is_a_one_line_error(share):
    with pytest.raises(ValueError, match="budget must be a share"):
        budget_init(share)
