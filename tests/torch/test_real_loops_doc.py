"""docs/real-loops.md: every loop on the page runs, and under ``observe`` trains bitwise as its unguarded twin
(weights, optimizer state, the scaler's scale), AMP overflow steps included (issue 14)."""
from __future__ import annotations

import pytest
import torch

import _doc_loops

BLOCKS = _doc_loops.blocks()
NANOGPT = "nanoGPT-style: AMP, gradient accumulation, clipping, an LR set per iteration"
AMP = "GradScaler with float16 and bfloat16"


def _guards(namespace):
    return [value for value in namespace.values() if type(value).__name__ == "Guard"]


def _assert_bitwise(guarded, bare):
    got, want = _doc_loops.trained_state(guarded), _doc_loops.trained_state(bare)
    assert [name for name, _ in got] == [name for name, _ in want] and got
    for (name, a), (_, b) in zip(got, want):
        assert torch.equal(a, b), f"{name} differs from the unguarded loop"


def test_the_page_has_every_loop_the_issue_asks_for():
    assert {NANOGPT, AMP, "torch.compile", "Two optimizers: a GAN",
            "An LR scheduler stepped per iteration"} <= set(BLOCKS)


@pytest.mark.parametrize("title", sorted(BLOCKS))
def test_observe_is_bitwise_the_unguarded_loop(title):
    code = BLOCKS[title]
    guarded = _doc_loops.run(code)
    _assert_bitwise(guarded, _doc_loops.run(_doc_loops.unguarded(code)))
    for guard in _guards(guarded):
        assert len(guard.history) > 0
        assert not [f for f in guard.findings if f.code == "non_finite"]


def test_nanogpt_loop_under_safe_is_bitwise_too_and_its_log_says_what_the_loop_did():
    code = _doc_loops.with_policy(BLOCKS[NANOGPT], "safe")
    guarded = _doc_loops.run(code)
    _assert_bitwise(guarded, _doc_loops.run(_doc_loops.unguarded(code)))
    steps = list(guarded["guard"].history)
    assert len(steps) == guarded["iterations"]
    assert all(s.micro_batches == 4 and s.clip_max_norm == 1.0 and s.loss_scale for s in steps)
    skipped = [s for s in steps if s.scaler_skipped]
    assert [s.step for s in skipped[:4]] == [0, 1, 2, 3]  # the scale backs off from 2**24 until it fits
    assert all(not s.applied and s.grad_norm is None and s.finite for s in skipped)
    applied = [s for s in steps if not s.scaler_skipped]
    assert applied and all(s.applied and s.grad_norm > 0 for s in applied)
    assert not guarded["guard"].actions


def test_amp_loops_record_the_scalers_overflow_skips_in_both_dtypes():
    guarded = _doc_loops.run(BLOCKS[AMP])
    assert set(guarded["trained"]) == {torch.float16, torch.bfloat16}
    # the last guard is the bfloat16 one; its scale starts at 2**127 and must back off
    steps = list(guarded["guard"].history)
    assert steps[0].scaler_skipped and steps[0].loss_scale == 2.0 ** 127
    assert not steps[-1].scaler_skipped and steps[-1].applied
