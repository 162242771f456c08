"""trainguard.hf.Guard under gradient accumulation (issue 14): the loss it records for an optimizer step is the loss
the Trainer logs for it, with gradient_accumulation_steps 1, 2 and 4, for a model whose loss takes the Trainer's
``num_items_in_batch`` (each micro-batch's loss is then a fraction of the step's mean) and for one whose loss does
not (the Trainer divides each micro-batch's mean by the accumulation steps)."""
from __future__ import annotations

import os
import warnings

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing leaves this machine
transformers = pytest.importorskip("transformers",
                                   reason="Transformers is not installed (pip install 'trainguard[hf]')")
pytest.importorskip("accelerate", reason="accelerate is not installed (pip install 'trainguard[hf]')")
from torch import nn  # noqa: E402

import trainguard.hf  # noqa: E402

from _integration_runs import MeanLoss, data  # noqa: E402


class ItemsLoss(MeanLoss):
    """``**kwargs`` in forward, as transformers' models have: the Trainer passes num_items_in_batch, the number of
    labels in the whole optimizer step, and the loss is the micro-batch's sum over it (a fraction of the mean)."""

    def forward(self, x, labels=None, num_items_in_batch=None, **kwargs):
        out = self.net(x)
        if num_items_in_batch is None:
            return {"loss": nn.functional.mse_loss(out, labels), "logits": out}
        return {"loss": nn.functional.mse_loss(out, labels, reduction="sum") / num_items_in_batch, "logits": out}


class LoggedLosses(transformers.TrainerCallback):
    def __init__(self):
        self.losses: list[float] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append(logs["loss"])


@pytest.mark.parametrize("model_class", [MeanLoss, ItemsLoss])
@pytest.mark.parametrize("accumulate", [1, 2, 4])
def test_recorded_loss_is_the_trainers_logged_loss(tmp_path, accumulate, model_class):
    x, y = data()
    x, y = x[:48], y[:48]  # 6 batches of 8: with 4 micro-batches per step, the epoch ends on a partial step
    dataset = [{"x": x[i], "labels": y[i]} for i in range(len(x))]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=8, gradient_accumulation_steps=accumulate,
        num_train_epochs=1, learning_rate=0.05, lr_scheduler_type="constant", report_to=[], save_strategy="no",
        logging_strategy="steps", logging_steps=1, use_cpu=True, disable_tqdm=True, dataloader_num_workers=0,
        seed=0)
    logged, guard = LoggedLosses(), trainguard.hf.Guard(policy="observe")
    trainer = transformers.Trainer(model=model_class(), args=args, train_dataset=dataset, callbacks=[logged, guard])
    assert trainer.model_accepts_loss_kwargs == (model_class is ItemsLoss)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # advice about a model that is not a PreTrainedModel
        trainer.train()
    history = list(guard.guard.history)
    recorded = [s.loss for s in history]
    assert len(recorded) == len(logged.losses) == -(-6 // accumulate)
    assert recorded == pytest.approx(logged.losses, rel=1e-5)
    assert history[0].batch_size == 8 * accumulate
