"""The backward passes the torch guard counts per update (``StepStats.backward_passes``) under the trainers' own
gradient accumulation: Lightning's ``accumulate_grad_batches`` and the HF Trainer's ``gradient_accumulation_steps``
close each epoch's last, partial group early, so its count is smaller than the usual one, never larger, and the
``accumulation_spill`` detector stays silent (6 batches per epoch, 4 per group: 4, 2, 4, 2, ...)."""
from __future__ import annotations

import os
import warnings

import pytest
import torch
from torch import nn

from _integration_runs import MeanLoss, data, mlp

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing leaves this machine
EPOCHS, ACCUMULATE = 4, 4
EXPECTED = [4, 2] * EPOCHS  # 6 batches of 8 per epoch: a group of 4, then the epoch's partial group of 2


def _spills(guard) -> list:
    return [f for f in guard.guard.session.findings if f.code == "accumulation_spill"]


def test_lightning_closes_the_partial_group_and_no_spill_is_found():
    L = pytest.importorskip("lightning", reason="Lightning is not installed (pip install 'trainguard[lightning]')")
    import trainguard.lightning

    class Regression(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = mlp()

        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.mse_loss(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    x, y = data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:48], y[:48]), batch_size=8)
    guard = trainguard.lightning.Guard(policy="observe")
    trainer = L.Trainer(max_epochs=EPOCHS, accumulate_grad_batches=ACCUMULATE, callbacks=[guard], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        accelerator="cpu", devices=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice about workers and logging
        trainer.fit(Regression(), loader)
    assert [s.backward_passes for s in guard.guard.history] == EXPECTED
    assert _spills(guard) == []


def test_the_hf_trainer_closes_the_partial_group_and_no_spill_is_found(tmp_path):
    transformers = pytest.importorskip("transformers",
                                       reason="Transformers is not installed (pip install 'trainguard[hf]')")
    pytest.importorskip("accelerate", reason="accelerate is not installed (pip install 'trainguard[hf]')")
    import trainguard.hf

    x, y = data()
    dataset = [{"x": x[i], "labels": y[i]} for i in range(48)]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=8, gradient_accumulation_steps=ACCUMULATE,
        num_train_epochs=EPOCHS, learning_rate=0.05, lr_scheduler_type="constant", report_to=[], save_strategy="no",
        logging_strategy="no", use_cpu=True, disable_tqdm=True, dataloader_num_workers=0, seed=0)
    guard = trainguard.hf.Guard(policy="observe")
    trainer = transformers.Trainer(model=MeanLoss(), args=args, train_dataset=dataset, callbacks=[guard])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # advice about a model that is not a PreTrainedModel
        trainer.train()
    assert [s.backward_passes for s in guard.guard.history] == EXPECTED
    assert _spills(guard) == []
