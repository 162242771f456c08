"""trainguard.lightning.Guard under ``accumulate_grad_batches`` (issue 14): the loss it records for an optimizer
step is the mean of the losses ``training_step`` returned for that step's micro-batches, with 1, 2 and 4 micro-batches
per step, the last step of the epoch a partial one."""
from __future__ import annotations

import warnings

import pytest

L = pytest.importorskip("lightning", reason="Lightning is not installed (pip install 'trainguard[lightning]')")
import torch  # noqa: E402
from torch import nn  # noqa: E402

import trainguard.lightning  # noqa: E402

from _integration_runs import data, mlp  # noqa: E402


class Regression(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = mlp()
        self.losses: list[float] = []  # each training_step's loss, in order

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.losses.append(loss.item())
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


@pytest.mark.parametrize("accumulate", [1, 2, 4])
def test_recorded_loss_is_the_mean_of_the_steps_micro_batch_losses(accumulate):
    x, y = data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:48], y[:48]), batch_size=8)
    module, guard = Regression(), trainguard.lightning.Guard(policy="observe")
    trainer = L.Trainer(max_epochs=1, accumulate_grad_batches=accumulate, callbacks=[guard], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        accelerator="cpu", devices=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice about workers and logging
        trainer.fit(module, loader)
    steps = [module.losses[i:i + accumulate] for i in range(0, len(module.losses), accumulate)]
    history = list(guard.guard.history)
    assert len(history) == len(steps) == -(-6 // accumulate)
    assert [s.loss for s in history] == pytest.approx([sum(s) / len(s) for s in steps], rel=1e-5)
