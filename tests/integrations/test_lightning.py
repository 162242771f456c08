"""trainguard.lightning.Guard in a real Lightning fit: optimizer steps (not micro-batches) are recorded, a NaN
step is skipped through Lightning's own optimizer step, and the run log is the plain guard's."""
from __future__ import annotations

import warnings

import pytest

L = pytest.importorskip("lightning", reason="Lightning is not installed (pip install 'trainguard[lightning]')")
import torch  # noqa: E402
from torch import nn  # noqa: E402

import trainguard.lightning  # noqa: E402
import trainguard.policies  # noqa: E402
from trainguard.io.runlog import read_runlog  # noqa: E402

from _integration_runs import (ACCUMULATE, BATCH, EPOCHS, NAN_CALL, NAN_STEP, OPTIMIZER_STEPS,  # noqa: E402
                               STEP_KEYS, data, mlp, plain_guard_log, record_keys)


class Regression(L.LightningModule):
    def __init__(self, nan_call: int | None = None, nan_after: bool = False):
        super().__init__()
        self.net = mlp()
        self.nan_call, self.calls = nan_call, 0
        self.nan_after = nan_after  # every training forward from nan_call on is NaN

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        if self.calls == self.nan_call or (self.nan_after and self.calls > self.nan_call):
            loss = loss * float("nan")
        self.calls += 1
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def fit(module: L.LightningModule, callbacks: list, **trainer_options) -> None:
    x, y = data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH)
    trainer = L.Trainer(max_epochs=EPOCHS, accumulate_grad_batches=ACCUMULATE, callbacks=callbacks, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        accelerator="cpu", devices=1, **trainer_options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice about workers and logging
        trainer.fit(module, loader)


def finite(module: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


def test_nan_step_is_skipped_and_logged_like_the_plain_guard(tmp_path):
    unguarded = Regression(NAN_CALL)
    fit(unguarded, [])
    assert not finite(unguarded)  # the NaN reaches the weights without a guard

    module = Regression(NAN_CALL)
    guard = trainguard.lightning.Guard(log=tmp_path / "run.jsonl", preset="full")
    fit(module, [guard], gradient_clip_val=0.5)
    assert finite(module)
    assert [f.step for f in guard.findings if f.code == "non_finite"] == [NAN_STEP]
    assert [(a.kind, a.step) for a in guard.actions] == [("skip_step", NAN_STEP)]

    log = read_runlog(tmp_path / "run.jsonl")
    assert not log.problems and log.end["status"] == "ok"
    assert [s.step for s in log.steps] == list(range(OPTIMIZER_STEPS))  # optimizer steps, not micro-batches
    assert [s.applied for s in log.steps].count(False) == 1 and not log.steps[NAN_STEP].applied
    assert [a.kind for a in log.actions] == ["skip_step"] and "non_finite" in [f.code for f in log.findings]
    # measured before Lightning clips to 0.5 (the first steps' norms are well above it)
    assert log.steps[0].grad_norm > 0.5
    # the update is measured after Lightning's optimizer step: moved weights, except on the skipped step
    assert all(layer.update_ratio > 0 for layer in log.steps[0].layers)
    assert all(layer.update_ratio == 0 for layer in log.steps[NAN_STEP].layers)
    assert log.steps[0].batch_size == BATCH * ACCUMULATE and log.steps[-1].epoch == EPOCHS - 1

    plain = record_keys(plain_guard_log(tmp_path / "plain.jsonl"))
    ours = record_keys(tmp_path / "run.jsonl")
    assert ours["header"] == plain["header"] and ours["end"] == plain["end"]
    assert ours["step"] <= STEP_KEYS and plain["step"] <= STEP_KEYS
    assert any(e.get("kind") == "integration" and e.get("name") == "lightning" for e in log.events)


def test_healthy_fit_is_untouched():
    bare, guarded = Regression(), Regression()
    fit(bare, [])
    guard = trainguard.lightning.Guard()
    fit(guarded, [guard])
    assert guard.actions == [] and not [f for f in guard.findings if f.severity >= 20]
    for a, b in zip(bare.parameters(), guarded.parameters()):
        assert torch.equal(a, b)


def test_amp_gradients_are_measured_unscaled():
    """fp16 AMP with a GradScaler (Lightning's 16-mixed plugin, on CPU here): the loss reaches
    ``on_before_backward`` multiplied by the scale and the gradients are unscaled just before
    ``on_before_optimizer_step``; the guard's loss and norms are those of the fp32 run, to fp16 rounding.
    (A scale of 256, not the default 65536, so that no fp16 gradient overflows before the NaN step.)"""
    from lightning.pytorch.plugins import MixedPrecision

    scaler = torch.amp.GradScaler("cpu", init_scale=256.0)
    runs = {}
    for precision, options in (("32-true", {}),
                               ("16-mixed", {"plugins": [MixedPrecision("16-mixed", "cpu", scaler=scaler)]})):
        guard = trainguard.lightning.Guard(preset="full")
        fit(Regression(NAN_CALL), [guard], **options)
        runs[precision] = guard
    assert scaler.get_scale() < 256.0  # the scaler was in use: it backed off at the NaN step
    full, mixed = (list(runs[p].guard.history) for p in ("32-true", "16-mixed"))
    for a, b in zip(full[:NAN_STEP], mixed[:NAN_STEP]):
        assert b.loss == pytest.approx(a.loss, rel=0.02) and b.grad_norm == pytest.approx(a.grad_norm, rel=0.02)
    assert [(a.kind, a.step) for a in runs["16-mixed"].actions] == [("skip_step", NAN_STEP)]


def test_a_stop_ordered_by_the_policy_ends_the_fit(tmp_path):
    module = Regression(NAN_CALL, nan_after=True)
    policy = trainguard.policies.skip_if_non_finite(max_consecutive=2)
    guard = trainguard.lightning.Guard(policy=policy, log=tmp_path / "run.jsonl")
    fit(module, [guard])  # (the helper silences the warning that says so)
    assert guard.stopped is not None and guard.stopped.step == NAN_STEP + 1
    assert finite(module)
    log = read_runlog(tmp_path / "run.jsonl")
    assert log.end["status"] == "stopped" and log.steps[-1].step == NAN_STEP + 1
    assert module.calls == (NAN_STEP + 2) * ACCUMULATE  # Lightning ran no batch after the stop
