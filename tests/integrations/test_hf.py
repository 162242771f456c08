"""trainguard.hf.Guard in a real transformers.Trainer run (a tiny model built from code, an in-memory dataset,
nothing downloaded): optimizer steps are recorded, a NaN step is skipped, the run log is the plain guard's."""
from __future__ import annotations

import copy
import os
import pickle
import warnings

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing leaves this machine
transformers = pytest.importorskip("transformers",
                                   reason="Transformers is not installed (pip install 'trainguard[hf]')")
pytest.importorskip("accelerate", reason="accelerate is not installed (pip install 'trainguard[hf]')")
import torch  # noqa: E402
from torch import nn  # noqa: E402

import trainguard.hf  # noqa: E402
import trainguard.policies  # noqa: E402
from trainguard.io.runlog import read_runlog  # noqa: E402

from _integration_runs import (ACCUMULATE, BATCH, EPOCHS, NAN_CALL, NAN_STEP, OPTIMIZER_STEPS,  # noqa: E402
                               STEP_KEYS, data, mlp, plain_guard_log, record_keys)


class Regression(nn.Module):
    """What the Trainer expects of a model: keyword inputs, ``{"loss": ...}`` out when labels are given."""

    def __init__(self, nan_call: int | None = None, nan_after: bool = False):
        super().__init__()
        self.net = mlp()
        self.nan_call, self.calls = nan_call, 0
        self.nan_after = nan_after  # every training forward from nan_call on is NaN
        self.losses: list[float] = []  # of the training forwards

    def forward(self, x, labels=None):
        out = self.net(x)
        loss = nn.functional.mse_loss(out, labels)
        if self.training and torch.is_grad_enabled():
            if self.calls == self.nan_call or (self.nan_after and self.calls > self.nan_call):
                loss = loss * float("nan")
            self.calls += 1
            self.losses.append(float(loss))
        return {"loss": loss, "logits": out}


def train(model: nn.Module, callbacks: list, output_dir, **options) -> None:
    x, y = data()
    dataset = [{"x": x[i], "labels": y[i]} for i in range(len(x))]
    args = transformers.TrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=BATCH, gradient_accumulation_steps=ACCUMULATE,
        num_train_epochs=EPOCHS, learning_rate=0.05, lr_scheduler_type="constant", report_to=[],
        save_strategy="no", logging_strategy="no", use_cpu=True, disable_tqdm=True, dataloader_num_workers=0,
        seed=0, **options)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=dataset, callbacks=callbacks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # advice about a model that is not a PreTrainedModel
        trainer.train()


def finite(module: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


def test_nan_step_is_skipped_and_logged_like_the_plain_guard(tmp_path):
    unguarded = Regression(NAN_CALL)
    train(unguarded, [], tmp_path / "bare", max_grad_norm=0.0)
    assert not finite(unguarded)  # the NaN reaches the weights without a guard

    model = Regression(NAN_CALL)
    guard = trainguard.hf.Guard(log=tmp_path / "run.jsonl", preset="full")
    train(model, [guard], tmp_path / "guarded")  # the Trainer's default clipping, max_grad_norm=1.0
    assert finite(model)
    assert [f.step for f in guard.findings if f.code == "non_finite"] == [NAN_STEP]
    assert [(a.kind, a.step) for a in guard.actions] == [("skip_step", NAN_STEP)]

    log = read_runlog(tmp_path / "run.jsonl")
    assert not log.problems and log.end["status"] == "ok"
    assert [s.step for s in log.steps] == list(range(OPTIMIZER_STEPS))  # optimizer steps, not micro-batches
    assert [s.applied for s in log.steps].count(False) == 1 and not log.steps[NAN_STEP].applied
    assert all(layer.update_ratio > 0 for layer in log.steps[0].layers)  # measured after the Trainer's step
    assert all(layer.update_ratio == 0 for layer in log.steps[NAN_STEP].layers)
    assert log.steps[0].batch_size == BATCH * ACCUMULATE
    assert log.steps[0].loss == pytest.approx(sum(model.losses[:ACCUMULATE]) / ACCUMULATE)  # its micro-batches' mean

    plain = record_keys(plain_guard_log(tmp_path / "plain.jsonl"))
    ours = record_keys(tmp_path / "run.jsonl")
    assert ours["header"] == plain["header"] and ours["end"] == plain["end"]
    assert ours["step"] <= STEP_KEYS
    assert any(e.get("kind") == "integration" and e.get("name") == "transformers" for e in log.events)



def test_healthy_run_is_untouched(tmp_path):
    bare, guarded = Regression(), Regression()
    train(bare, [], tmp_path / "bare")
    guard = trainguard.hf.Guard()
    train(guarded, [guard], tmp_path / "guarded")
    assert guard.actions == [] and not [f for f in guard.findings if f.severity >= 20]
    for a, b in zip(bare.parameters(), guarded.parameters()):
        assert torch.equal(a, b)


def test_a_stop_ordered_by_the_policy_ends_training(tmp_path):
    model = Regression(NAN_CALL, nan_after=True)
    policy = trainguard.policies.skip_if_non_finite(max_consecutive=2)
    guard = trainguard.hf.Guard(policy=policy, log=tmp_path / "run.jsonl")
    train(model, [guard], tmp_path / "out")  # (the helper silences the warning that says so)
    assert guard.stopped is not None and guard.stopped.step == NAN_STEP + 1
    assert finite(model)
    log = read_runlog(tmp_path / "run.jsonl")
    assert log.end["status"] == "stopped" and log.steps[-1].step == NAN_STEP + 1
    assert model.calls == (NAN_STEP + 2) * ACCUMULATE  # the Trainer ran no batch after the stop


class _CopyMidTraining(transformers.TrainerCallback):
    """What an EMA callback or a user's checkpoint code does mid-training: deep-copy and pickle the model."""

    def __init__(self, tmp_path):
        self.tmp_path, self.copies = tmp_path, []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == 2:
            self.copies.append(copy.deepcopy(model))
            torch.save(model, self.tmp_path / "model.pt")


def test_nothing_of_trainguard_sits_on_the_model_during_training(tmp_path):
    copier = _CopyMidTraining(tmp_path)
    train(Regression(), [trainguard.hf.Guard(policy="safe"), copier], tmp_path / "out")
    copied = copier.copies[0]
    assert not any(m._forward_hooks for m in copied.modules())
    saved = pickle.dumps(torch.load(tmp_path / "model.pt", weights_only=False))
    assert b"trainguard" not in saved
