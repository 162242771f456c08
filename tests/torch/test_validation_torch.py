"""``guard.record_validation``: a plain PyTorch loop's evaluations reach the run log and the overfitting detector,
at the severity the held-out harm deserves (real training of a small MLP)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import trainguard
from trainguard.core.findings import Severity
from trainguard.io.runlog import read_runlog


def _data(n, gen, flip):
    x = torch.randn(n, 40, generator=gen)
    y = (x @ (torch.arange(1, 41, dtype=torch.float32) / 40) > 0).long()
    flipped = torch.rand(n, generator=gen) < flip
    y[flipped] = 1 - y[flipped]
    return x, y


def _train(tmp_path, train_flip, val_flip, epochs=30):
    """48 training examples, 1000 held out, an MLP wide enough to memorize them all, Adam for ``epochs``."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    (x, y), (xv, yv) = _data(48, gen, train_flip), _data(1000, gen, val_flip)
    model = torch.nn.Sequential(torch.nn.Linear(40, 128), torch.nn.ReLU(), torch.nn.Linear(128, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    guard = trainguard.Guard(model, opt, policy="observe", log=str(tmp_path / "run.jsonl"))
    found = []
    for _ in range(epochs):
        for i in range(0, 48, 16):
            opt.zero_grad()
            loss = F.cross_entropy(model(x[i:i + 16]), y[i:i + 16])
            loss.backward()
            guard.step(loss)
        with torch.no_grad():
            out = model(xv)
            found += guard.record_validation(F.cross_entropy(out, yv), accuracy=(out.argmax(1) == yv).float().mean())
    guard.close()
    return guard, found, read_runlog(tmp_path / "run.jsonl")


def doctor_overfitting(tmp_path):
    from trainguard.doctor import diagnose_file

    found = diagnose_file(tmp_path / "run.jsonl").findings
    return [f.severity for f in found if f.code == "overfitting" and "source" not in f.evidence]


def test_memorizing_noisy_labels_is_overfitting_found_live(tmp_path):
    # 40% of the training labels flipped: the network memorizes them, the held-out loss climbs and the held-out
    # accuracy falls from its best.
    guard, found, log = _train(tmp_path, train_flip=0.4, val_flip=0.0)
    assert [f.severity for f in found] == [Severity.WARNING]
    assert found[0].evidence["metrics"]["accuracy"]["recent"] < found[0].evidence["metrics"]["accuracy"]["best"]
    assert guard.diagnose()[0].code == "overfitting"
    assert len(log.validations) == 30 and [v.step for v in log.validations[:2]] == [3, 6]
    assert set(log.validations[0].metrics) == {"accuracy"} and log.validations[0].train_loss is not None
    assert [f.code for f in log.findings] == ["overfitting"] and log.diagnosis[0]["code"] == "overfitting"
    assert doctor_overfitting(tmp_path) == [Severity.WARNING]  # the doctor reads the run log's validations


def test_a_loss_that_rises_while_the_accuracy_holds_is_information_only(tmp_path):
    # Clean training labels, 10% of the held-out ones flipped: the network grows confident, so the loss on the
    # flipped held-out examples (and the held-out loss) climbs while the held-out accuracy stays at its best.
    guard, found, log = _train(tmp_path, train_flip=0.0, val_flip=0.1)
    assert [f.severity for f in found] == [Severity.INFO]
    assert found[0].evidence["metrics_held"] == ["accuracy"]
    assert [c.code for c in guard.diagnose()] == [] and log.diagnosis == []
    assert doctor_overfitting(tmp_path) == [Severity.INFO]


def test_bad_values_are_a_one_line_error(tmp_path):
    model = torch.nn.Linear(2, 1)
    guard = trainguard.Guard(model, torch.optim.SGD(model.parameters(), lr=0.1), policy="observe")
    with pytest.raises(TypeError, match="the validation loss must be a number or a one-element tensor"):
        guard.record_validation(torch.ones(3))
    guard.close()
    with pytest.raises(RuntimeError, match="after guard.close"):
        guard.record_validation(0.5)
