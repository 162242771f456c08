"""The pure repair policies on synthetic statistics streams (numpy only, no training)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainguard.core.findings import Finding, Severity
from trainguard.core.policies import (
    LEVELS, NO_STEP, Plan, RollbackOrder, adam_guard, auto, autoclip, chain, clip_global_norm, clip_value, escalate,
    get_policy, restore_mode, safe, skip_if_non_finite, skip_outliers, step_decision, zclip,
)
from trainguard.core.policies.clip import clip_outliers, outlier_threshold
from trainguard.core.policies import lr_backoff as lrb
from trainguard.core.policies import rollback as rb
from trainguard.core.stats import LayerStats, StepStats

NAN = float("nan")


def run(policy, stream):
    """Feeds a stream of StepStats; returns the plans."""
    state, plans = policy.init(), []
    for stats in stream:
        plan, state = policy.update(stats, (), Plan(), state)
        plans.append(plan)
    return plans


def healthy(n, seed=0, start=0):
    """A noisy, decreasing loss and a noisy gradient norm, as a healthy run shows."""
    rng = np.random.default_rng(seed)
    return [StepStats(step=start + i, loss=float(2.0 * math.exp(-i / 300) * rng.lognormal(0, 0.3)),
                      grad_norm=float(rng.lognormal(0, 0.25))) for i in range(n)]


def bad(step, loss=NAN, norm=NAN):
    finite = math.isfinite(loss) and math.isfinite(norm)
    return StepStats(step=step, loss=loss, grad_norm=norm, loss_finite=math.isfinite(loss), grads_finite=finite)


# ---------------------------------------------------------------- step decision and composition
def test_step_decision_reference():
    plan = Plan(skip_non_finite=True, skip_above=100.0, clip_norm=2.0)
    assert step_decision(plan, False, 1.0) == (False, 1.0, "non_finite")
    assert step_decision(plan, True, 150.0) == (False, 1.0, "grad_outlier")
    apply, coef, reason = step_decision(plan, True, 4.0)
    assert apply and reason == "clip" and coef == pytest.approx(0.5)
    assert step_decision(plan, True, 1.0) == (True, 1.0, None)
    assert step_decision(Plan(), False, NAN) == (True, 1.0, None)  # no orders: nothing happens


def test_chain_threads_the_plan_and_keeps_the_tightest_clip():
    policy = chain(clip_global_norm(5.0), clip_value(0.5), clip_global_norm(2.0), skip_if_non_finite())
    (plan,) = run(policy, [StepStats(step=0, loss=1.0, grad_norm=1.0)])
    assert plan.clip_norm == 2.0 and plan.clip_value == 0.5 and plan.skip_non_finite
    assert "chain(" in policy.name and len(policy.init()) == 4


def test_get_policy_names_and_errors():
    assert get_policy("observe") is None
    assert get_policy("safe").needs == frozenset()
    assert "snapshots" in get_policy("auto").needs
    custom = chain(skip_if_non_finite())
    assert get_policy(custom) is custom
    with pytest.raises(ValueError, match="unknown policy 'fast'"):
        get_policy("fast")
    with pytest.raises(ValueError):
        clip_global_norm(0.0)


# ---------------------------------------------------------------------------- skipping
def test_skip_if_non_finite_counts_and_gives_up_as_apply_if_finite():
    policy = skip_if_non_finite(max_consecutive=3)
    plans = run(policy, [bad(0), bad(1), StepStats(step=2, loss=1.0), bad(3), bad(4), bad(5)])
    assert all(p.skip_non_finite for p in plans)
    assert [p.stop is not None for p in plans] == [False, False, False, False, False, True]
    assert plans[-1].actions[0].kind == "stop"
    state = policy.init()
    for s in [bad(0), StepStats(step=1, loss=1.0), bad(2)]:
        _, state = policy.update(s, (), Plan(), state)
    assert state == (1, 2)  # notfinite_count, total_notfinite


def test_skip_outliers_skips_an_extreme_norm_only_after_warmup():
    stream = healthy(40) + [StepStats(step=40, loss=1.0, grad_norm=1e4)]
    plans = run(skip_outliers(), stream)
    assert math.isinf(plans[10].skip_above)  # warm-up: no opinion yet
    assert 1e4 > plans[39].skip_above > 5.0


# ---------------------------------------------------------------------------- clipping
@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_safe_never_acts_on_healthy_noisy_streams(seed):
    stream = healthy(400, seed)
    plans = run(safe(), stream)
    for stats, plan in zip(stream[1:], plans[:-1]):  # each step meets the plan made after the step before
        decision = step_decision(plan, True, stats.grad_norm)
        assert decision == (True, 1.0, None)
        assert plan.actions == () and plan.stop is None


def test_zclip_clips_a_spike_and_is_not_inflated_by_it():
    stream = healthy(60) + [StepStats(step=60, loss=1.0, grad_norm=50.0)]
    plans = run(zclip(z=2.5), stream)
    before, after = plans[59].clip_norm, plans[60].clip_norm
    assert 1.0 < before < 50.0
    assert after < 1.5 * before  # the EMA was fed the clipped norm


def heavy_tailed(n, seed, sigma, rare, start=0):
    """Healthy gradient norms with heavy tails: lognormal noise, and a rare kind of batch (a minority class, a
    mislabelled sample) whose norm is 10x the others'."""
    rng = np.random.default_rng(seed)
    norms = rng.lognormal(0.0, sigma, n) * np.where(rng.uniform(size=n) < rare, 10.0, 1.0)
    return [StepStats(step=start + i, loss=1.0, grad_norm=float(g)) for i, g in enumerate(norms)]


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.0, 0.4), st.sampled_from([0.0, 0.1, 0.3]))
def test_the_default_clip_never_acts_on_heavy_tailed_healthy_norms(seed, sigma, rare):
    stream = heavy_tailed(1500, seed, sigma, rare)
    plans = run(clip_outliers(), stream)
    for stats, plan in zip(stream[1:], plans[:-1]):
        assert step_decision(plan, True, stats.grad_norm) == (True, 1.0, None), stats


def test_clip_outliers_clips_a_spike_to_its_threshold_and_is_not_inflated_by_it():
    stream = heavy_tailed(200, 0, 0.3, 0.0) + [StepStats(step=200, loss=1.0, grad_norm=40.0)]  # past min_history
    stream += heavy_tailed(40, 1, 0.3, 0.0, start=201)
    plans = run(clip_outliers(), stream)
    before = plans[199].clip_norm
    assert 5.0 < before < 40.0
    apply, coef, reason = step_decision(plans[199], True, 40.0)
    assert apply and reason == "clip" and coef == pytest.approx(before / 40.0, rel=1e-4)
    assert plans[-1].clip_norm < 1.2 * before  # the window kept the clipped norm


def test_clip_outliers_has_no_threshold_on_a_window_of_zero_norms():
    # A dead network: the median gradient norm is 0; there is no level to be an outlier of.
    stream = [StepStats(step=i, loss=0.69, grad_norm=0.0 if i % 9 else 1e-3) for i in range(300)]
    assert all(math.isinf(plan.clip_norm) for plan in run(clip_outliers(), stream))
    assert math.isinf(outlier_threshold(np.zeros(50), 8.0, 10.0))


def test_autoclip_threshold_is_a_percentile_of_the_norms():
    norms = list(range(1, 101))
    plans = run(autoclip(percentile=10), [StepStats(step=i, loss=1.0, grad_norm=float(n)) for i, n in enumerate(norms)])
    assert plans[-1].clip_norm == pytest.approx(np.percentile(norms, 10))


# ---------------------------------------------------------------------- the escalation chain
def levels_of(policy, stream):
    state, out = policy.init(), []
    for stats in stream:
        plan, state = policy.update(stats, (), Plan(), state)
        out.append((LEVELS[state.level], plan))
    return out


def test_one_nan_is_held_by_skipping_alone():
    policy = escalate(patience=3, hold=5)
    out = levels_of(policy, healthy(30) + [bad(30)] + healthy(20, start=31))
    assert out[30][0] == "skip"
    assert out[-1][0] == "watch"
    assert all(plan.lr_scale == 1.0 and plan.rollback is None for _, plan in out)


def test_escalation_order_skip_clip_backoff_rollback_stop():
    policy = escalate(patience=2, hold=5, max_backoffs=2, max_rollbacks=1, snapshot_every=10)
    stream = healthy(30) + [bad(30 + i, loss=1e9, norm=1e9) for i in range(40)]
    out = levels_of(policy, stream)
    kinds = [a.kind for _, plan in out for a in plan.actions]
    assert kinds == ["clip", "lr_backoff", "lr_backoff", "rollback", "stop"]
    rollback = next(plan.rollback for _, plan in out if plan.rollback is not None)
    assert isinstance(rollback, RollbackOrder)
    assert rollback.label <= 29 and rollback.label % 10 == 0  # a snapshot from before the episode
    assert rollback.skip_batches >= 1
    stop_plan = next(plan for _, plan in out if plan.stop)
    assert "stopped at step" in stop_plan.stop and "divergence" in stop_plan.stop
    # clip engaged at the healthy median norm, LR halved twice then once more on rollback
    clip_plan = next(plan for level, plan in out if level == "clip")
    assert 0.5 < clip_plan.clip_norm < 3.0
    assert min(plan.lr_scale for _, plan in out) == 0.125


def test_skipped_batches_after_a_rollback_are_ignored_and_lr_stays_reduced():
    policy = escalate(patience=1, hold=3, max_backoffs=1)
    stream = healthy(10) + [bad(10 + i) for i in range(4)]
    state = policy.init()
    for stats in stream:
        plan, state = policy.update(stats, (), Plan(), state)
        if plan.rollback:
            break
    assert plan.rollback is not None and state.skip_until == stats.step + plan.rollback.skip_batches
    for stats in healthy(40, start=stats.step + 1):
        plan, state = policy.update(stats, (), Plan(), state)
    assert LEVELS[state.level] == "watch"
    assert plan.lr_scale == state.lr.ceiling == 0.25  # never recovers above the scale that held


def test_divergence_needs_loss_above_the_start_and_far_above_recent():
    policy = escalate()
    # a loss falling to ~1e-6 then wiggling 30x is noise near zero, not divergence
    stream = [StepStats(step=i, loss=1.0 / (i + 1) ** 4, grad_norm=1.0) for i in range(40)]
    stream += [StepStats(step=40 + i, loss=3e-5 * (1 + i % 2), grad_norm=1.0) for i in range(10)]
    assert all(level == "watch" for level, _ in levels_of(policy, stream))
    rising = healthy(30) + [StepStats(step=30, loss=1e6, grad_norm=1.0)]
    assert levels_of(policy, rising)[-1][0] == "skip"


def test_a_signed_high_variance_loss_is_never_called_a_divergence():
    # REINFORCE's loss, -return * log-prob: negative and positive, its median near 0 (a policy-gradient run)
    rng = np.random.default_rng(0)
    stream = [StepStats(step=i, loss=float(rng.normal(0.0, 5.0)), grad_norm=float(rng.lognormal(0.0, 0.5)))
              for i in range(500)]
    assert all(level == "watch" and not plan.actions for level, plan in levels_of(escalate(), stream))


def test_snapshots_are_ordered_every_n_healthy_steps_keeping_k():
    policy = escalate(snapshot_every=10, keep=2)
    out = levels_of(policy, healthy(35))
    ordered = [i for i, (_, plan) in enumerate(out) if plan.snapshot]
    assert ordered == [9, 19, 29]  # labels 10, 20, 30: the step whose update each precedes
    assert out[9][1].snapshot == 2


def test_finding_codes_name_the_episode():
    policy = escalate(patience=1)
    state = policy.init()
    for stats in healthy(10):
        _, state = policy.update(stats, (), Plan(), state)
    spike = Finding("loss_spike", Severity.WARNING, 10, None, {}, "")
    _, state = policy.update(StepStats(step=10, loss=1e6, grad_norm=1.0), (spike,), Plan(), state)
    assert state.reason == "loss_spike"


# ------------------------------------------------------------------------- bookkeeping
def test_lr_backoff_recovers_gradually_to_the_ceiling():
    s = lrb.backoff(lrb.lr_scale())
    s = lrb.lower_ceiling(s, failed_at=1.0)
    assert s == (0.5, 0.5)
    s = lrb.backoff(s)
    for _ in range(99):
        s = lrb.recover(s, recover_steps=100)
    assert 0.25 < s.scale < 0.5
    s = lrb.recover(s, recover_steps=100)
    assert s.scale == 0.5 == lrb.recover(s).scale


def test_rollback_book_chooses_the_newest_snapshot_before():
    book = rb.snapshot_book(every=10, keep=3)
    for label in (10, 20, 30):
        assert rb.due(book, label)
        book = rb.record_snapshot(book, label)
    assert book.labels == (10, 20, 30)
    assert rb.choose(book, 25) == 20 and rb.choose(book, 5) is None
    assert rb.forget_after(book, 20).labels == (10, 20)
    assert rb.skip_count(onset=100, step=104) == 5
    assert rb.skip_count(onset=0, step=10_000, max_skip=500) == 500


# ------------------------------------------------------------------- adam_guard, restore_mode
def test_adam_guard_caps_after_a_high_update_rms_then_lapses():
    policy = adam_guard(threshold=5.0, cap=1.0, duration=3, reset_moments=True)
    rms = lambda step, r: StepStats(step=step, loss=1.0, layers=(LayerStats("w", adam_update_rms=r),))
    plans = run(policy, [rms(0, 0.9), rms(1, 12.0), StepStats(step=2, loss=1.0), StepStats(step=5, loss=1.0)])
    assert plans[0].adam_update_cap is None
    assert plans[1].adam_update_cap == 1.0 and plans[1].reset_moments and plans[1].actions[0].params["tensor"] == "w"
    assert plans[2].adam_update_cap == 1.0 and not plans[2].reset_moments
    assert plans[3].adam_update_cap is None


def test_adam_guard_gives_no_cap_before_the_first_step():
    policy = adam_guard()
    plan, _ = policy.update(NO_STEP, (), Plan(), policy.init())
    assert plan.adam_update_cap is None and plan.actions == ()


def test_restore_mode_restores_under_auto_and_only_warns_under_safe():
    stream = [StepStats(step=0, loss=1.0, eval_mode_modules=("bn",)), StepStats(step=1, loss=1.0),
              StepStats(step=2, loss=1.0, eval_mode_modules=("bn",))]
    restoring = run(restore_mode(restore=True), stream)
    assert restoring[0].restore_modules == ("bn",) and restoring[0].actions[0].params["restored"]
    assert restoring[2].actions == ()  # same modules, reported once
    warning = run(restore_mode(restore=False), stream)
    assert warning[0].restore_modules == () and warning[0].actions[0].params["restored"] is False


def test_auto_accepts_escalation_settings():
    policy = auto(patience=5, snapshot_every=50)
    assert "escalate" in policy.name
