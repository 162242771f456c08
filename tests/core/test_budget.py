"""The overhead budget's schedule (trainguard.core.budget) on injected step and self-times: no clock, no flakes."""
from __future__ import annotations

import math
import random

import pytest

from trainguard.core.budget import (DEFAULT_CAP, HEADROOM, RAMP_STEPS, budget_init, budget_update,
                                    layers_due, light_steps, required_stride)

MLP = dict(step_s=3.5e-3, full_s=520e-6, light_s=30e-6, layers_s=3.1e-3)  # the benchmark's MLP, CPU
LONG = dict(step_s=100e-3, full_s=900e-6, light_s=30e-6, layers_s=7e-3)  # a step long relative to the guard


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
    state, kinds = run(budget_init(0.02, cap=64), 6000, **MLP)
    assert 1 < state.stride < 64
    bound = HEADROOM * 0.02 * MLP["step_s"]  # the share the stride is chosen for (see HEADROOM)
    after_ramp = kinds[RAMP_STEPS * state.stride + 200:]  # its edges cut a per-layer period: within 2% of the bound
    assert mean_self(after_ramp, MLP["full_s"], MLP["light_s"], MLP["layers_s"]) <= 1.02 * bound
    # the smallest such stride: one less would exceed the budget
    full, light, layers = MLP["full_s"], MLP["light_s"], MLP["layers_s"]
    s = state.stride - 1
    assert light + (full - light) / s + (layers - full) / (25 * s) > bound


def test_the_cap_bounds_the_stride_however_dear_the_guard():
    state, kinds = run(budget_init(0.02), 4 * RAMP_STEPS * DEFAULT_CAP, **dict(MLP, full_s=2e-3))  # out of reach
    assert state.stride == DEFAULT_CAP
    full = [i for i, k in enumerate(kinds) if k != "light"]
    gaps = [b - a for a, b in zip(full, full[1:])]
    assert max(gaps) == DEFAULT_CAP  # a full step at least every cap steps
    assert all(b - a == DEFAULT_CAP for a, b in zip(full, full[1:]) if a >= RAMP_STEPS * DEFAULT_CAP)


def test_the_stride_ramps_up_with_the_run_so_each_doubling_holds_as_many_full_steps_as_the_start():
    _, kinds = run(budget_init(0.02), RAMP_STEPS * DEFAULT_CAP, **dict(MLP, full_s=2e-3))
    full = [i for i, k in enumerate(kinds) if k != "light"]
    assert "light" not in kinds[:2 * RAMP_STEPS]  # stride <= steps // 64: 1 before step 128
    for start in (RAMP_STEPS * 2 ** k for k in range(5)):  # [64, 128), [128, 256), ... [1024, 2048)
        assert sum(start <= i < 2 * start for i in full) >= int(RAMP_STEPS * math.log(2))


def test_a_step_long_relative_to_the_guard_is_measured_in_full_every_step_with_the_presets_layer_cadence():
    state, kinds = run(budget_init(0.02), 300, **LONG)
    assert state.stride == 1 and "light" not in kinds
    assert [i for i, k in enumerate(kinds) if k == "layers"] == list(range(0, 300, 25))


def test_warmup_steps_are_full():
    _, kinds = run(budget_init(0.02, warmup=200), 400, **MLP)
    assert "light" not in kinds[:200] and "light" in kinds


def test_trouble_makes_the_next_cap_steps_full():
    state, _ = run(budget_init(0.02), 3000, **MLP)
    assert light_steps(state) > 0
    state = budget_update(state, "full", MLP["full_s"], MLP["step_s"], trouble=True)
    for _ in range(DEFAULT_CAP - 1):
        assert light_steps(state) == 0
        state = budget_update(state, "full", MLP["full_s"], MLP["step_s"])
    assert light_steps(state) == 0
    state = budget_update(state, "full", MLP["full_s"], MLP["step_s"])
    assert light_steps(state) > 0


def test_timing_noise_and_a_pause_do_not_swing_the_stride():
    state, _ = run(budget_init(0.02, cap=64), 6000, **MLP)
    settled = state.stride
    noise = random.Random(0)
    state, _ = run(state, 1000, **MLP, jitter=lambda i: 1.0 + 0.1 * (2 * noise.random() - 1))  # +-10%
    assert abs(state.stride - settled) <= math.ceil(0.1 * settled)  # +-10% in the times: at most 10% in the stride
    paused = budget_update(state, "full", MLP["full_s"], 100 * MLP["step_s"])  # an evaluation between two steps
    assert paused.stride == state.stride


def test_the_stride_shrinks_when_steps_grow_long():
    state, _ = run(budget_init(0.02, cap=64), 3000, **MLP)
    assert state.stride > 1
    state, kinds = run(state, 3000, **dict(MLP, step_s=100e-3))
    assert state.stride == 1 and "light" not in kinds[-100:]


def test_required_stride_is_one_until_times_are_known():
    assert required_stride(budget_init(0.02), 0.02) == 1


@pytest.mark.parametrize("share", [0, 1, -0.1, 2, "0.02", True, None])
def test_a_budget_outside_0_1_is_a_one_line_error(share):
    with pytest.raises(ValueError, match="budget must be a share"):
        budget_init(share)
