"""A change of data that the run learns down (a curriculum stage, Bengio et al. 2009; a new task, Goodfellow et al.
2013) is left alone by ``skip_outliers`` and ``escalate``; an explosion, which climbs past every level the run has
seen, is still skipped and escalated. Synthetic step streams shaped after the dev corpus' permuted-task switch
(gradient norm ~1 at the start, ~0.01 when fit, ~5 at the switch, then learned back down)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from trainguard.core.policies import LEVELS, Plan, adam_guard, escalate, skip_outliers, step_decision
from trainguard.core.policies.clip import clip_outliers
from trainguard.core.stats import LayerStats, StepStats


def fit_then_switch(switch: int = 300, jump: float = 5.0, seed: int = 0, after: int = 200) -> list[StepStats]:
    """The loss falls from 2.3 to ~1e-3 and the norm from ~1 to ~0.01; at ``switch`` the data change: the loss
    jumps to 5.6 and the norm to ``jump``, and both are learned down by a third every 5 steps, with less batch
    noise while the whole batch is new (the corpus run's first five losses after the switch fall monotonically:
    5.58, 4.96, 3.66, 3.47, 2.28)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(switch + after):
        decay = math.exp(-i / 40) if i < switch else 2.4 * math.exp(-(i - switch) / 12)
        noise = float(rng.lognormal(0.0, 0.3 if i < switch or i > switch + 20 else 0.15))
        loss = max(2.3 * decay, 1e-3) * noise
        norm = max((1.0 if i < switch else jump / 2.4) * decay, 0.01) * noise
        out.append(StepStats(step=i, loss=loss, grad_norm=norm))
    return out


def decisions(policy, stream):
    """What the standing orders do to each step (each step meets the plan made after the step before), and the
    policy's actions and last state."""
    state = policy.init()
    plan, state = policy.update(StepStats(step=-1), (), Plan(), state)
    out, actions = [], []
    for stats in stream:
        out.append(step_decision(plan, stats.finite, stats.grad_norm))
        plan, state = policy.update(stats, (), Plan(), state)
        actions += plan.actions
    return out, actions, state


def test_skip_outliers_lets_a_jump_back_into_the_runs_own_range_through():
    stream = fit_then_switch()
    assert stream[300].grad_norm > 100 * stream[299].grad_norm  # an extreme outlier of the recent norms
    out, _, _ = decisions(skip_outliers(), stream)
    assert all(d.apply and d.reason is None for d in out)


def test_skip_outliers_skips_a_norm_past_every_level_the_run_has_seen():
    stream = fit_then_switch()[:300] + [StepStats(step=300 + i, loss=50.0 * 10 ** i, grad_norm=30.0 * 10 ** i)
                                        for i in range(3)]
    out, _, _ = decisions(skip_outliers(), stream)
    assert [d.reason for d in out[300:]] == ["grad_outlier"] * 3


@pytest.mark.parametrize("seed", range(10))
def test_escalate_watches_a_jump_that_is_learned_down_and_orders_nothing(seed):
    stream = fit_then_switch(seed=seed)
    out, actions, state = decisions(escalate(), stream)
    assert all(d.apply and d.reason is None for d in out) and not actions
    assert LEVELS[state.level] == "watch"


def test_escalate_starts_its_chain_when_the_jump_climbs():
    stream = fit_then_switch()[:300] + [StepStats(step=300 + i, loss=5.0 * 3 ** i, grad_norm=5.0 * 3 ** i)
                                        for i in range(12)]  # tripled: past `growth` (2) at once
    out, actions, _ = decisions(escalate(patience=3), stream)
    assert out[301].reason is None  # the step after the jump is not judged yet
    assert out[302].reason == "grad_outlier"  # the loss climbed at 301: skipped from 302 on
    assert [a.kind for a in actions][:2] == ["clip", "lr_backoff"]


def test_escalate_starts_its_chain_at_a_jump_whose_norm_left_the_runs_own_range():
    # seed 001's unscaled inputs (Keras, SGD 0.1): the norm at the jump is 300x the largest the run applied, and
    # the next step is 1e16: watching it one step would let that update through
    stream = fit_then_switch()[:300] + [StepStats(step=300 + i, loss=5.0 * 1e4 ** i, grad_norm=300.0 * 1e4 ** i)
                                        for i in range(3)]
    out, _, _ = decisions(escalate(), stream)
    assert out[300].apply and out[301].reason == "grad_outlier"


def test_escalate_starts_its_chain_when_the_jump_is_not_learned_down():
    # the loss stays up (no new low for `fall_within` steps): a run stuck far above its level is in trouble
    stream = fit_then_switch()[:300] + [StepStats(step=300 + i, loss=5.6 - 0.1 * min(i, 2), grad_norm=5.0)
                                        for i in range(20)]
    out, actions, _ = decisions(escalate(patience=3, fall_within=10), stream)
    assert all(d.apply for d in out[:313])
    assert not out[313].apply and [a.kind for a in actions][:1] == ["clip"]


def test_escalate_starts_its_chain_when_the_norm_grows_during_the_fall():
    stream = fit_then_switch()[:300] + [StepStats(step=300 + i, loss=5.6 - 0.3 * i, grad_norm=5.0 * 2.5 ** i)
                                        for i in range(8)]  # the loss falls, the norm grows 2.5x a step
    out, _, _ = decisions(escalate(patience=3), stream)
    assert out[301].apply and not out[302].apply  # norm 12.5 at 301, over twice the jump's 5


def test_clip_outliers_leaves_a_jump_back_into_the_runs_own_range_alone():
    stream = fit_then_switch()
    out, _, _ = decisions(clip_outliers(), stream)
    assert all(d.reason is None for d in out)
    exploding = stream[:300] + [StepStats(step=300 + i, loss=1.0, grad_norm=15.0 * 2 ** i) for i in range(3)]
    out, _, _ = decisions(clip_outliers(), exploding)
    assert [d.reason for d in out[300:]] == ["clip"] * 3  # past 10x the largest norm applied (~1.4)


def test_adam_guard_is_not_triggered_by_a_jump_back_into_the_runs_own_range():
    def sampled(stats, rms):
        return StepStats(step=stats.step, loss=stats.loss, grad_norm=stats.grad_norm,
                         layers=(LayerStats("w", adam_update_rms=rms),))
    stream = fit_then_switch()
    stream[300] = sampled(stream[300], 16.0)  # the permuted-task switch's update RMS, at a norm ~4x the start's
    _, actions, _ = decisions(adam_guard(), stream)
    assert actions == []
    stream[300] = StepStats(step=300, loss=50.0, grad_norm=40.0, layers=stream[300].layers)
    _, actions, _ = decisions(adam_guard(), stream)
    assert [a.kind for a in actions] == ["adam_guard"]
