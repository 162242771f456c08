"""Seed 003 in Keras: an MLP regression on targets of scale ~150 with SGD(0.01, momentum=0.9) explodes to NaN;
policy="auto" keeps it finite and ends near where the seed's own fix (clipnorm=1.0) ends."""
from __future__ import annotations

import math

import pytest

pytest.importorskip("keras")

import trainguard.keras as tk  # noqa: E402
from trainguard.io.runlog import read_runlog  # noqa: E402

from _keras_seeds import seed003  # noqa: E402

EPOCHS = 30


def test_unguarded_loss_goes_nan():
    losses = seed003(None, epochs=3)
    assert not math.isfinite(losses[-1])


def test_observe_names_the_explosion_and_changes_nothing(tmp_path):
    guard = tk.Guard(policy="observe", log=tmp_path / "observe.jsonl")
    losses = seed003(guard, epochs=3)
    assert not math.isfinite(losses[-1])  # observe never touches the run
    codes = [f.code for f in guard.findings]
    assert "exploding_gradient" in codes and "non_finite" in codes
    assert codes.index("exploding_gradient") < codes.index("non_finite")  # warned before the NaN
    non_finite = next(f for f in guard.findings if f.code == "non_finite")
    assert non_finite.where and non_finite.where.endswith("kernel")
    assert guard.actions == []
    causes = [c.code for c in guard.diagnose()]
    assert {"exploding_gradient", "lr_too_high", "unscaled_data"} & set(causes[:3])
    log = read_runlog(tmp_path / "observe.jsonl")
    assert log.header["framework"].startswith("keras")
    assert [s.step for s in log.steps] == list(range(len(log.steps))) and len(log.steps) == 3 * 16


@pytest.mark.parametrize("policy", ["observe", "safe"])
def test_with_the_users_clipnorm_a_guarded_run_is_the_unguarded_run(policy):
    """The seed's own fix (clipnorm=1.0) trains; guarding it under observe/safe changes no bit of it."""
    reference = seed003(None, epochs=3, clipnorm=1.0)
    guard = tk.Guard(policy=policy)
    assert seed003(guard, epochs=3, clipnorm=1.0) == reference
    assert all(math.isfinite(v) for v in reference) and guard.actions == []
    assert "guard_internal_error" not in [f.code for f in guard.findings]
    assert max(s.grad_norm for s in guard.history) > 1.0  # the raw norm, before the user's clipping


def test_auto_stays_finite_and_ends_close_to_clipnorm(tmp_path):
    guard = tk.Guard(policy="auto", log=tmp_path / "auto.jsonl")
    guarded = seed003(guard, epochs=EPOCHS)
    reference = seed003(None, epochs=EPOCHS, clipnorm=1.0)
    assert all(math.isfinite(v) for v in guarded)
    # "Close": no worse than twice the final loss of the seed's own fix, after the same number of epochs.
    assert guarded[-1] <= 2.0 * reference[-1], (guarded[-1], reference[-1])
    kinds = [a.kind for a in guard.actions]
    assert "skip_step" in kinds and set(kinds) & {"lr_backoff", "rollback", "clip"}
    if "rollback" in kinds:  # the batches skipped after it are recorded once, as the torch executor does
        rollback = next(a for a in guard.actions if a.kind == "rollback")
        skipped = next(a for a in guard.actions if a.kind == "skip_batches")
        assert skipped.params["count"] == rollback.params["skip_batches"] == len(skipped.params["steps"])
        assert all(not s.applied for s in guard.history if s.step in skipped.params["steps"])
    log = read_runlog(tmp_path / "auto.jsonl")
    assert log.end is not None and log.end["status"] == "ok"
    assert len(log.actions) == len(guard.actions)
    assert not all(s.applied for s in log.steps)
