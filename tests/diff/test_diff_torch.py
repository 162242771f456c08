"""Acceptance with real PyTorch training (forensic preset, policy "observe"): a loop left in ``model.eval()``,
a different shuffle, identical runs, a summed loss."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import trainguard  # noqa: E402
from trainguard.io.runlog import read_runlog  # noqa: E402
from trainguard.adapters.torch import Guard  # noqa: E402
from trainguard.cli import main  # noqa: E402

STEPS = 24


def _train(path, *, eval_mode=False, shuffle_seed=0, loss_reduction="mean", init_seed=None, momentum=0.9,
           lr_step=None):
    """A small BatchNorm classifier, same seed and data each time; only the named choice changes."""
    torch.manual_seed(0)
    x = torch.randn(256, 12)
    y = x[:, :3].argmax(1)
    if init_seed is not None:
        torch.manual_seed(init_seed)
    model = nn.Sequential(nn.Linear(12, 24), nn.BatchNorm1d(24), nn.ReLU(), nn.Linear(24, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=momentum)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, lr_step, 0.5) if lr_step else None
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True,
                                         generator=torch.Generator().manual_seed(shuffle_seed))
    if eval_mode:
        model.eval()  # the bug: left on before training
    with Guard(model, optimizer, policy="observe", log=path, preset="forensic") as guard:
        step = 0
        while step < STEPS:
            for xb, yb in loader:
                optimizer.zero_grad()
                loss = nn.functional.cross_entropy(model(xb), yb, reduction=loss_reduction)
                loss.backward()
                guard.step(loss, batch_size=len(xb), inputs=xb, targets=yb)
                if scheduler is not None:
                    scheduler.step()
                step += 1
                if step == STEPS:
                    break
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("torch_runs")
    return {
        "correct": _train(root / "correct.jsonl"),
        "again": _train(root / "again.jsonl"),
        "eval": _train(root / "eval.jsonl", eval_mode=True),
        "shuffled": _train(root / "shuffled.jsonl", shuffle_seed=1),
        "summed": _train(root / "summed.jsonl", loss_reduction="sum"),
    }


def test_the_forensic_preset_records_what_diff_needs(runs):
    log = read_runlog(runs["correct"])
    assert len(log.steps) == STEPS
    assert all(s.layers and s.batch_fingerprint and s.buffers and s.eval_mode_modules == () for s in log.steps)
    assert {b.name for b in log.steps[0].buffers} == {"1.running_mean", "1.running_var", "1.num_batches_tracked"}


def test_model_eval_before_training_is_bn_inference_mode_at_step_0(runs, capsys):
    result = trainguard.diff(runs["correct"], runs["eval"])
    assert result.verdict == "part"
    assert result.first_divergence.step == 0
    assert result.first_divergence.category in ("mode", "bn_stats")
    assert result.first_divergence.where.split(".")[0] == "1"  # the BatchNorm1d, not a Linear layer
    assert result.cause.code == "bn_inference_mode" and result.cause.evidence["run"] == "B"
    assert result.first_step_by_category["data"] is None and result.first_step_by_category["lr"] is None
    assert main(["diff", str(runs["correct"]), str(runs["eval"])]) == 1
    assert "bn_inference_mode" in capsys.readouterr().out


def test_two_identical_correct_runs_agree(runs, capsys):
    assert main(["diff", str(runs["correct"]), str(runs["again"])]) == 0
    assert "AGREE" in capsys.readouterr().out
    assert trainguard.diff(runs["correct"], runs["again"]).first_inexact_step is None


def test_a_different_shuffle_is_a_data_order_difference_not_a_model_difference(runs, capsys):
    assert main(["diff", str(runs["correct"]), str(runs["shuffled"]), "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["cause"]["code"] == "data_order"
    assert document["first_divergence"]["category"] == "data"
    assert document["first_step_by_category"]["mode"] is None


def test_a_summed_loss_is_named_by_the_batch_size(runs):
    result = trainguard.diff(runs["correct"], runs["summed"])
    assert result.cause.code == "batch_size_dependent_loss"
    assert result.first_divergence.step == 0 and result.cause.evidence["summing_run"] == "B"


@pytest.mark.parametrize("change, step, category, code", [
    (dict(init_seed=1), 0, "weight", "initialization"),
    (dict(momentum=0.5), 1, "weight", "optimizer"),  # SGD's first step ignores momentum: it parts at step 1
    (dict(lr_step=5), 5, "lr", "lr_schedule"),
])
def test_other_changes_are_found_where_they_start(runs, tmp_path, change, step, category, code):
    result = trainguard.diff(runs["correct"], _train(tmp_path / "changed.jsonl", **change))
    assert (result.first_divergence.step, result.first_divergence.category, result.cause.code) == \
        (step, category, code), result.cause.message
