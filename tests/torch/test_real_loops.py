"""Real loops in the plain PyTorch guard (issue 14): a GradScaler, gradient accumulation, the loop's own clipping.
Each test trains a small model for real and compares with the same loop unguarded where the run must not change."""
from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import _doc_loops
import trainguard
from trainguard.core.detectors.exploding_gradient import exploding_gradient
from trainguard.core.stats import StepStats
from trainguard.io.runlog import read_runlog

torch.set_num_threads(1)


def _mlp(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    return model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def _batch(step):
    generator = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(16, 8, generator=generator)
    return x, x.sum(dim=1, keepdim=True)


def _same(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


# ------------------------------------------------------------------------------------------------- AMP
def _amp_run(policy=None, *, dtype=torch.float16, steps=14, nan_at=(), log=None, skip_at=(), growth_interval=2000,
             trainer_steps=False):
    """A float16/bfloat16 autocast loop with a GradScaler that overflows on its first steps (init scale 2**24)."""
    model, optimizer = _mlp()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**24 if dtype == torch.float16 else 2.0**127,
                                  growth_interval=growth_interval)
    if isinstance(policy, str):
        guard = trainguard.Guard(model, optimizer, policy=policy, log=log, scaler=scaler)
    elif policy is not None:  # a repairer of the user's own
        guard = trainguard.Guard(model, optimizer, policy=policy, scaler=scaler)
    else:
        guard = None
    for step in range(steps):
        x, y = _batch(step)
        if step in nan_at:
            x = x.clone()
            x[0, 0] = math.nan
        with torch.autocast("cpu", dtype=dtype):
            loss = F.mse_loss(model(x).float(), y)
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        if guard is None:
            if step not in skip_at:
                scaler.step(optimizer)
            else:
                scaler.unscale_(optimizer)
            scaler.update()
        elif trainer_steps:  # a trainer that takes the step itself around begin_update / end_update
            apply = guard.begin_update(loss, inputs=x, targets=y)
            if apply:
                scaler.step(optimizer)
            scaler.update()
            guard.end_update(apply)
        else:
            guard.step(loss, inputs=x, targets=y)
    if guard is not None:
        guard.close()
    return model, scaler, guard


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("policy", ["observe", "safe", "auto"])
def test_amp_run_is_bitwise_the_unguarded_one_overflow_steps_included(dtype, policy):
    bare, bare_scaler, _ = _amp_run(None, dtype=dtype)
    model, scaler, guard = _amp_run(policy, dtype=dtype)
    assert _same(model, bare) and scaler.get_scale() == bare_scaler.get_scale()
    skipped = [s for s in guard.history if s.scaler_skipped]
    assert skipped and skipped[0].step == 0 and len(skipped) < len(guard.history)
    assert all(not s.applied and s.grad_norm is None and s.finite and s.loss_scale > 1 for s in skipped)
    assert [s.loss_scale for s in skipped[:2]] == ([2.0**24, 2.0**23] if dtype == torch.float16 else
                                                   [2.0**127, 2.0**126])
    assert not [f for f in guard.findings if f.code == "non_finite"] and not guard.actions


def test_scaler_skips_are_in_the_run_log_as_such(tmp_path):
    log = tmp_path / "amp.jsonl"
    _amp_run("observe", log=str(log))
    records = [json.loads(line) for line in log.read_text().splitlines()]
    steps = [r for r in records if r.get("type") == "step"]
    assert steps and steps[0]["scaler_skipped"] is True and steps[0]["applied"] is False
    assert "grad_norm" not in steps[0] and steps[0]["loss_scale"] == 2.0**24
    assert "scaler_skipped" not in steps[-1] and steps[-1]["grad_norm"] > 0
    assert not [r for r in records if r.get("type") == "finding" and r.get("code") == "non_finite"]
    read = read_runlog(log)
    assert not read.problems and read.steps[0].scaler_skipped and read.steps[0].loss_scale == 2.0**24
    assert [(s.scaler_skipped, s.loss_scale, s.applied) for s in read.steps] == [
        (r.get("scaler_skipped", False), r["loss_scale"], r.get("applied", True)) for r in steps]
    assert all(layer.grad_norm is None and layer.grad_abs_mean is None for layer in read.steps[0].layers)


def test_a_non_finite_loss_under_amp_is_still_a_finding_and_observe_still_changes_nothing():
    bare, bare_scaler, _ = _amp_run(None, nan_at=(9,))
    model, scaler, guard = _amp_run("observe", nan_at=(9,))
    assert _same(model, bare) and scaler.get_scale() == bare_scaler.get_scale()
    bad = [f for f in guard.findings if f.code == "non_finite"]
    assert len(bad) == 1 and bad[0].step == 9 and bad[0].evidence["non_finite"] == ["loss"]
    assert guard.history[9].scaler_skipped and guard.history[9].first_nonfinite_module == "(inputs)"


def test_a_step_the_policy_skips_is_neither_stepped_nor_left_without_a_scaler_update():
    class SkipStep10:  # a repairer of the user's own: skips one finite step (no overflow at 10)
        def before_update(self, ctx):
            return ctx.step != 10

        def after_update(self, stats, findings):
            return []

        def close(self):
            pass

    bare, bare_scaler, _ = _amp_run(None, skip_at=(10,), growth_interval=3)
    model, scaler, guard = _amp_run(SkipStep10(), growth_interval=3)
    assert _same(model, bare)
    assert scaler.get_scale() == bare_scaler.get_scale()
    assert scaler._get_growth_tracker() == bare_scaler._get_growth_tracker()
    assert not guard.history[10].applied and not guard.history[10].scaler_skipped


def test_begin_and_end_update_with_a_scaler_for_a_trainer_that_steps_itself():
    bare, bare_scaler, _ = _amp_run(None)
    model, scaler, guard = _amp_run("safe", trainer_steps=True)
    assert _same(model, bare) and scaler.get_scale() == bare_scaler.get_scale()
    assert guard.history[0].scaler_skipped and not [f for f in guard.findings if f.code == "non_finite"]


@pytest.mark.parametrize("kwargs, error, message", [
    ({"scaler": "amp"}, TypeError, r"^Guard\(scaler=\.\.\.\) takes the run's torch.amp.GradScaler, got str$"),
    ({"clip": -1.0}, ValueError, r"^Guard\(clip=\.\.\.\) takes the max_norm of the run's gradient clipping"),
    ({"clip": "1"}, ValueError, r"^Guard\(clip=\.\.\.\) takes the max_norm"),
])
def test_bad_scaler_or_clip_is_a_one_line_error(kwargs, error, message):
    model, optimizer = _mlp()
    with pytest.raises(error, match=message):
        trainguard.Guard(model, optimizer, **kwargs)


# ---------------------------------------------------------------------------------------- accumulation
def _accumulating_run(policy, *, sizes=(16, 16, 16, 16), steps=6, fetch_every=None, nan_micro=None):
    model, optimizer = _mlp()
    guard = trainguard.Guard(model, optimizer, policy=policy, fetch_every=fetch_every) if policy else None
    if guard is not None and fetch_every is not None and fetch_every > 1:
        guard._read_free = False  # as on an accelerator: nothing read between two fetches (CPU would read at once)
    losses = []
    for step in range(steps):
        step_losses = []
        for k, n in enumerate(sizes):
            x, y = _batch(100 * step + k)
            x, y = x[:n], y[:n]
            if (step, k) == nan_micro:
                x = x.clone()
                x[1, 2] = math.inf
            loss = F.mse_loss(model(x), y)
            step_losses.append((loss.item(), n))
            if guard is not None:
                guard.accumulate(loss, batch_size=n, inputs=x, targets=y)
            (loss / len(sizes)).backward()
        if guard is not None:
            guard.step()
        else:
            optimizer.step()
        optimizer.zero_grad()
        losses.append(step_losses)
    if guard is not None:
        guard.close()
    return model, guard, losses


@pytest.mark.parametrize("sizes", [(16, 16, 16, 16), (16, 8, 4)])
def test_accumulated_step_records_the_true_mean_loss_and_the_total_batch(sizes):
    bare, _, _ = _accumulating_run(None, sizes=sizes)
    model, guard, losses = _accumulating_run("observe", sizes=sizes)
    assert _same(model, bare)
    for stats, micro in zip(guard.history, losses):
        want = sum(loss * n for loss, n in micro) / sum(n for _, n in micro)
        assert stats.loss == pytest.approx(want, rel=1e-6)
        assert stats.micro_batches == len(sizes) and stats.batch_size == sum(sizes)


def test_the_data_checks_see_every_micro_batch():
    _, guard, _ = _accumulating_run("observe", sizes=(16, 16))
    xs = torch.cat([_batch(k)[0] for k in (0, 1)])
    summary = guard.history[0].inputs
    assert summary.mean == pytest.approx(xs.mean().item(), abs=1e-6)
    assert summary.std == pytest.approx(xs.std(correction=0).item(), rel=1e-5)
    assert summary.abs_max == pytest.approx(xs.abs().max().item())


@pytest.mark.parametrize("fetch_every", [1, 3])  # 3: the deferred fetch of an accelerator, run on CPU
def test_a_non_finite_micro_batch_is_found_and_its_step_skipped_under_safe(fetch_every):
    model, guard, _ = _accumulating_run("safe", nan_micro=(3, 2), fetch_every=fetch_every)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    bad = guard.history[3]
    assert not bad.applied and not bad.loss_finite and bad.first_nonfinite_micro_batch == 2
    if fetch_every == 1:  # located at once, with that micro-batch's own inputs
        assert bad.first_nonfinite_module == "(inputs)"
    assert [a.kind for a in guard.actions] == ["skip_step"] and guard.actions[0].step == 3


def test_step_with_a_loss_after_accumulate_is_a_one_line_error():
    model, optimizer = _mlp()
    guard = trainguard.Guard(model, optimizer)
    x, y = _batch(0)
    loss = F.mse_loss(model(x), y)
    loss.backward()
    guard.accumulate(loss)
    with pytest.raises(ValueError, match=r"^guard.step\(loss\): the loss came from guard.accumulate\(\)"):
        guard.step(loss)
    guard.close()  # a guard left open keeps its activation probe, a global forward hook


# ------------------------------------------------------------------------------------------- clipping
def _clipped_run(policy, *, cap=0.5, mode="user", steps=30, spike_at=(), preset="full"):
    """A loop that clips at ``cap``: the loop's own ``clip_grad_norm_`` handed over (``user``), or the guard
    clipping with that cap (``guard``); ``spike_at`` multiplies a batch's targets by 100."""
    model, optimizer = _mlp()
    guard = None
    if policy is not None:
        guard = trainguard.Guard(model, optimizer, policy=policy, clip=cap, preset=preset)
    norms = []
    for step in range(steps):
        x, y = _batch(step)
        if step in spike_at:
            y = y * 100
        optimizer.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        if guard is None:
            norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), cap).item())
            optimizer.step()
        elif mode == "user":
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cap)
            norms.append(norm.item())
            guard.step(loss, inputs=x, targets=y, grad_norm=norm)
        else:
            guard.step(loss, inputs=x, targets=y)
    if guard is not None:
        guard.close()
    return model, guard, norms


@pytest.mark.parametrize("mode", ["user", "guard"])
@pytest.mark.parametrize("policy", ["observe", "safe"])
def test_a_clipped_run_is_bitwise_the_unguarded_one_and_records_the_pre_clip_norm(mode, policy):
    bare, _, bare_norms = _clipped_run(None, steps=80, spike_at=(60, 70))
    model, guard, _ = _clipped_run(policy, mode=mode, steps=80, spike_at=(60, 70), preset="standard")
    assert _same(model, bare)
    recorded = [s.grad_norm for s in guard.history]
    assert recorded == pytest.approx(bare_norms, rel=1e-6)
    assert all(s.clip_max_norm == 0.5 for s in guard.history)
    assert max(recorded) > 0.5  # the loop's clip did bite: the record is the norm before it
    assert not guard.actions  # the policy neither clipped again nor skipped what the loop's clip contained


def test_per_layer_gradient_norms_of_a_clipped_run_are_those_before_the_clip():
    _, guard, _ = _clipped_run("observe", steps=2)
    model, _ = _mlp()
    x, y = _batch(0)
    F.mse_loss(model(x), y).backward()
    want = [p.grad.norm().item() for p in model.parameters()]
    got = [layer.grad_norm for layer in guard.history[0].layers]
    assert guard.history[0].grad_norm > 0.5 and got == pytest.approx(want, rel=1e-5)


def test_a_spike_the_loops_clip_contains_is_seen_at_its_size_and_is_at_most_info():
    _, guard, norms = _clipped_run("observe", spike_at=(25,))
    spike = guard.history[25]
    assert spike.grad_norm == pytest.approx(norms[25], rel=1e-6) and spike.grad_norm > 20 * 0.5
    found = [f for f in guard.findings if f.code == "exploding_gradient"]
    assert found and all(f.severity.name == "INFO" for f in found)
    assert found[0].step == 25 and found[0].evidence["clip_max_norm"] == 0.5 and found[0].evidence["clipped"]
    assert "clipped to 0.5 by the run" in found[0].message


def test_exploding_gradient_in_a_clipped_run_still_warns_on_sustained_growth():
    det = exploding_gradient()
    state = det.init()
    found = []
    for step, (loss, norm) in enumerate([(27133, 637), (17524, 1228), (17790, 2086), (50819, 10624)]):
        out, state = det.update(StepStats(step=step, loss=loss, grad_norm=norm, clip_max_norm=1.0), state)
        found.extend(out)
    assert found and found[0].severity.name == "WARNING" and found[0].evidence["rule"] == "sustained_growth"
    assert found[0].evidence["clipped"] and "clipped to 1 by the run" in found[0].message


# ------------------------------------------------------------------------------ nanoGPT, a NaN micro-batch
def _nanogpt_definitions() -> dict:
    """The page's nanoGPT-style model and data, without its training loop."""
    code = _doc_loops.blocks()["nanoGPT-style: AMP, gradient accumulation, clipping, an LR set per iteration"]
    head, marker, _ = code.partition("model = CharGPT(")
    assert marker
    return _doc_loops.run(head)


def _nanogpt_nan_run(policy):
    """float32 (nanoGPT's GradScaler disabled), 4 micro-batches, clipping at 1; one micro-batch of iteration 3
    is a bad batch whose token embeddings are NaN (its tokens are all the same id, which the text never has)."""
    ns = _nanogpt_definitions()
    torch.manual_seed(0)
    model = ns["CharGPT"](len(ns["chars"]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    model.tokens.register_forward_hook(
        lambda module, args, out: torch.where((args[0] == 0).all(dim=1)[:, None, None], math.nan, out))
    guard = trainguard.Guard(model, optimizer, policy=policy, scaler=scaler, clip=1.0) if policy else None
    for it in range(6):
        for micro_step in range(4):
            x, y = ns["get_batch"]()
            if (it, micro_step) == (3, 1):
                x = torch.zeros_like(x)
            logits, loss = model(x, y)
            if guard is not None:
                guard.accumulate(loss, inputs=(x, y))
            scaler.scale(loss / 4).backward()
        scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if guard is not None:
            guard.step(grad_norm=norm)
        else:
            scaler.step(optimizer)
            scaler.update()
        optimizer.zero_grad(set_to_none=True)
    if guard is not None:
        guard.close()
    return model, guard


def test_nanogpt_nan_micro_batch_is_located_and_skipped_under_safe():
    bare, _ = _nanogpt_nan_run(None)
    assert not all(torch.isfinite(p).all() for p in bare.parameters())  # unguarded, the NaN reaches the weights
    model, guard = _nanogpt_nan_run("safe")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    bad = guard.history[3]
    assert not bad.applied and bad.first_nonfinite_micro_batch == 1 and bad.first_nonfinite_module == "tokens"
    assert [(a.kind, a.step) for a in guard.actions] == [("skip_step", 3)]
    assert all(s.applied and s.finite for s in guard.history if s.step != 3)


def test_a_loss_already_divided_by_the_accumulation_steps_is_warned_of_once():
    model, optimizer = _mlp()
    guard = trainguard.Guard(model, optimizer, policy="observe")
    with pytest.warns(RuntimeWarning, match=r"guard.accumulate\(\) was given each micro-batch's loss divided by 4 "):
        for step in range(3):
            for k in range(4):
                x, y = _batch(10 * step + k)
                loss = F.mse_loss(model(x), y) / 4
                guard.accumulate(loss, inputs=x, targets=y)
                loss.backward()
            guard.step()
            optimizer.zero_grad()
    guard.close()


def test_the_contracts_loss_raises_no_warning_even_with_a_loss_function_that_divides():
    model, optimizer = _mlp()
    guard = trainguard.Guard(model, optimizer, policy="observe")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for step in range(2):
            for k in range(4):
                x, y = _batch(10 * step + k)
                loss = (model(x) - y).square().sum() / len(x)  # a division, by the batch size
                guard.accumulate(loss, inputs=x, targets=y)
                (loss / 4).backward()
            guard.step()
            optimizer.zero_grad()
    guard.close()


def test_the_guards_own_failures_in_accumulation_and_amp_are_contained(monkeypatch):
    from trainguard.adapters.torch import accumulate, amp

    def broken(*args):
        raise ZeroDivisionError("a bug of the guard's")

    bare, _, _ = _accumulating_run(None)
    monkeypatch.setattr(accumulate.MicroBatches, "mean_loss", broken)
    with pytest.warns(RuntimeWarning, match="internal error"):
        model, guard, _ = _accumulating_run("safe")
    assert _same(model, bare) and [f.code for f in guard.findings].count("guard_internal_error") == 1

    bare, bare_scaler, _ = _amp_run(None)
    monkeypatch.setattr(amp, "overflow_and_scale", broken)
    with pytest.warns(RuntimeWarning, match="internal error"):
        model, scaler, guard = _amp_run("safe")
    assert _same(model, bare) and scaler.get_scale() == bare_scaler.get_scale()
