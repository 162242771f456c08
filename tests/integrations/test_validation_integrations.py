"""The trainer callbacks record each evaluation (HF ``on_evaluate``, Lightning's validation end) as a validation
result: it lands in the run log and the overfitting detector finds a run that memorizes noisy labels, live."""
from __future__ import annotations

import os
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainguard.core.findings import Severity
from trainguard.io.runlog import read_runlog

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing leaves this machine
EPOCHS, BATCH = 20, 16


def noisy_labels(n: int, flip: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear rule over 40 features, ``flip`` of the labels flipped: memorizing them hurts the held-out data."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 40, generator=gen)
    y = (x @ (torch.arange(1, 41, dtype=torch.float32) / 40) > 0).long()
    flipped = torch.rand(n, generator=gen) < flip
    y[flipped] = 1 - y[flipped]
    return x, y


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(40, 128), nn.ReLU(), nn.Linear(128, 2))


class HFClassifier(nn.Module):
    """What a Trainer expects of a model: a dict with the loss when given labels."""

    def __init__(self):
        super().__init__()
        self.net = mlp()

    def forward(self, x, labels=None):
        logits = self.net(x)
        return {"loss": F.cross_entropy(logits, labels), "logits": logits}


def overfitting_findings(guard) -> list[Severity]:
    return [f.severity for f in guard.findings if f.code == "overfitting"]


def test_hf_trainer_evaluations_are_recorded_and_overfitting_found(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    import trainguard.hf

    def rows(x, y):
        return [{"x": x[i], "labels": y[i]} for i in range(len(x))]

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=BATCH, num_train_epochs=EPOCHS, learning_rate=1e-2,
        lr_scheduler_type="constant", eval_strategy="epoch", report_to=[], save_strategy="no", logging_strategy="no",
        use_cpu=True, disable_tqdm=True, dataloader_num_workers=0, seed=0)
    guard = trainguard.hf.Guard(policy="observe", log=str(tmp_path / "run.jsonl"))
    trainer = transformers.Trainer(model=HFClassifier(), args=args, train_dataset=rows(*noisy_labels(48, 0.4, 0)),
                                   eval_dataset=rows(*noisy_labels(500, 0.0, 1)), callbacks=[guard])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # advice about a model that is not a PreTrainedModel
        trainer.train()
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    log = read_runlog(tmp_path / "run.jsonl")
    assert [v.loss for v in log.validations] == pytest.approx([h["eval_loss"] for h in evals])
    assert [v.step for v in log.validations] == [h["step"] for h in evals]
    assert "eval_runtime" in evals[0] and all(v.metrics == {} for v in log.validations)  # timings: no metric
    assert overfitting_findings(guard) == [Severity.WARNING]
    assert log.diagnosis[0]["code"] == "overfitting"


def test_lightning_validations_are_recorded_and_overfitting_found(tmp_path):
    L = pytest.importorskip("lightning")
    import trainguard.lightning

    class Classifier(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = mlp()

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", F.cross_entropy(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-2)

    def loader(x, y, batch):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch)

    guard = trainguard.lightning.Guard(policy="observe", log=str(tmp_path / "run.jsonl"))
    trainer = L.Trainer(max_epochs=EPOCHS, callbacks=[guard], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice about workers and logging
        trainer.fit(Classifier(), loader(*noisy_labels(48, 0.4, 0), BATCH), loader(*noisy_labels(500, 0.0, 1), 500))
    log = read_runlog(tmp_path / "run.jsonl")
    # One record per epoch's validation (the sanity check before training is not one), after 3 steps each.
    assert [v.step for v in log.validations] == [3 * (epoch + 1) for epoch in range(EPOCHS)]
    assert [v.epoch for v in log.validations] == list(range(EPOCHS))
    assert all(v.loss is not None and v.metrics == {} for v in log.validations)
    assert overfitting_findings(guard) == [Severity.WARNING]
    assert log.diagnosis[0]["code"] == "overfitting"


def test_hf_evaluation_metrics_are_recorded_by_name(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    import trainguard.hf

    def accuracy(prediction):
        return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}

    x, y = noisy_labels(96, 0.0, 0)
    rows = [{"x": x[i], "labels": y[i]} for i in range(len(x))]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=BATCH, num_train_epochs=2, eval_strategy="epoch",
        report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True, disable_tqdm=True, seed=0)
    trainer = transformers.Trainer(model=HFClassifier(), args=args, train_dataset=rows[:64], eval_dataset=rows[64:],
                                   callbacks=[trainguard.hf.Guard(policy="observe", log=str(tmp_path / "run.jsonl"))],
                                   compute_metrics=accuracy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train()
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    records = read_runlog(tmp_path / "run.jsonl").validations
    assert [(v.step, v.epoch) for v in records] == [(4, 0), (8, 1)]  # epochs numbered from 0, as the steps'
    assert [s.epoch for s in read_runlog(tmp_path / "run.jsonl").steps] == [0] * 4 + [1] * 4
    assert [v.metrics for v in records] == [{"accuracy": pytest.approx(h["eval_accuracy"])} for h in evals]
