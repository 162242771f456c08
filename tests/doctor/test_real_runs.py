"""Real tiny torch trainings, logged the way users log them (CSV, JSONL, TensorBoard, trainer_state.json), then
diagnosed: a healthy run gets no warning in any format; a BatchNorm net whose last batch of each epoch holds two
samples gets periodic spikes with their cause; a too-high LR on unscaled inputs blows up; a wide net on a few
random labels overfits."""
from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from doctor_synth import write_csv, write_jsonl, write_tensorboard, write_trainer_state  # noqa: E402
from trainguard.core.findings import Severity  # noqa: E402
from trainguard.doctor import diagnose_file  # noqa: E402


def blobs(n: int, seed: int, random_labels: bool = False):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 16, generator=g) + (y[:, None] * 2 - 1) * 0.6
    if random_labels:
        y = torch.randint(0, 2, (n,), generator=g)
    return x, y


def train(model, opt, x, y, xv, yv, batch: int, epochs: int, loss_fn=None, schedule=None, eval_every=None):
    """Minibatch training; returns the run as the doctor_synth writers take it."""
    import numpy as np

    loss_fn = loss_fn or nn.CrossEntropyLoss()
    rows, evals, step = [], [], 0
    for epoch in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            model.train()
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), math.inf))
            rows.append((step, epoch, loss.item(), opt.param_groups[0]["lr"], grad_norm, len(idx)))
            opt.step()
            if schedule:
                schedule.step()
            step += 1
            if eval_every and step % eval_every == 0:
                evals.append((step - 1, _eval(model, loss_fn, xv, yv)))
        if not eval_every:
            evals.append((step - 1, _eval(model, loss_fn, xv, yv)))
    cols = list(zip(*rows))
    return {"step": np.array(cols[0], float), "epoch": np.array(cols[1], float), "loss": np.array(cols[2]),
            "lr": np.array(cols[3]), "grad_norm": np.array(cols[4]), "batch_size": np.array(cols[5], float),
            "eval_step": np.array([e[0] for e in evals], float), "eval_loss": np.array([e[1] for e in evals]),
            "steps_per_epoch": math.ceil(len(x) / batch)}


def _eval(model, loss_fn, xv, yv) -> float:
    model.eval()
    with torch.no_grad():
        return float(loss_fn(model(xv), yv))


@pytest.fixture(scope="module")
def healthy_run():
    torch.manual_seed(0)
    x, y = blobs(512, 0)
    xv, yv = blobs(256, 1)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    total = 8 * 32
    warm = torch.optim.lr_scheduler.LinearLR(opt, 0.1, 1.0, total_iters=20)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total - 20)
    schedule = torch.optim.lr_scheduler.SequentialLR(opt, [warm, cosine], milestones=[20])
    return train(model, opt, x, y, xv, yv, batch=16, epochs=8, schedule=schedule)


def warnings_of(result):
    assert result.error is None, result.error
    return [(f.code, f.cause, f.message) for f in result.findings if f.severity >= Severity.WARNING]


def test_healthy_torch_run_is_healthy_in_every_format(healthy_run, tmp_path):
    paths = [write_csv(healthy_run, tmp_path / "metrics.csv"), write_jsonl(healthy_run, tmp_path / "m.jsonl"),
             write_trainer_state(healthy_run, tmp_path / "trainer_state.json"),
             write_tensorboard(healthy_run, tmp_path / "tb")]
    for path in paths:
        assert warnings_of(diagnose_file(path)) == [], path


def test_batchnorm_with_a_two_sample_last_batch_spikes_every_epoch(tmp_path):
    torch.manual_seed(0)
    x, y = blobs(1026, 2)  # 16 batches of 64, then 2 samples: BatchNorm's batch statistics go wild
    xv, yv = blobs(128, 3)
    model = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 2))
    run = train(model, torch.optim.Adam(model.parameters(), 3e-3), x, y, xv, yv, batch=64, epochs=10)
    result = diagnose_file(write_csv(run, tmp_path / "bn.csv"))
    periodic = [f for f in result.findings if f.code == "periodic_spike"]
    assert periodic and periodic[0].cause == "batch_size_dependent_loss"
    assert periodic[0].evidence["period_steps"] == run["steps_per_epoch"]
    assert periodic[0].evidence["smaller"] is True


def test_too_high_lr_on_unscaled_inputs_blows_up(tmp_path):
    torch.manual_seed(0)
    x, _ = blobs(256, 4)
    x = x * 30  # unscaled features
    target = (x[:, :1] * 0.5 + 1.0)
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=3e-4, momentum=0.9)
    warm = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 + s * 0.5)  # an LR that keeps rising
    run = train(model, opt, x, target, x[:32], target[:32], batch=32, epochs=12, loss_fn=nn.MSELoss(),
                schedule=warm)
    found = warnings_of(diagnose_file(write_jsonl(run, tmp_path / "high_lr.jsonl")))
    assert any(code in ("non_finite", "divergence") and cause in ("lr_too_high", "exploding_gradient")
               for code, cause, _ in found), found


def test_wide_net_on_few_random_labels_overfits(tmp_path):
    torch.manual_seed(0)
    x, y = blobs(48, 5, random_labels=True)
    xv, yv = blobs(256, 6, random_labels=True)
    model = nn.Sequential(nn.Linear(16, 128), nn.ReLU(), nn.Linear(128, 2))
    run = train(model, torch.optim.Adam(model.parameters(), 1e-2), x, y, xv, yv, batch=48, epochs=120,
                eval_every=4)
    found = warnings_of(diagnose_file(write_trainer_state(run, tmp_path / "trainer_state.json")))
    assert ("overfitting", "overfitting") in [(c, k) for c, k, _ in found], found
