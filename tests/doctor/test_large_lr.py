"""``large_lr``: a Trainer log (AdamW by default) at a learning rate as large as a transformer's weights. A loss
that gets nowhere much at that rate is a warning and the engine's ``lr_too_high``; the same loss at an ordinary
rate, or in a log that does not say the optimizer, is not."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from trainguard.core.findings import Severity
from trainguard.doctor import diagnose_file


def _state(path: Path, loss: np.ndarray, peak_lr: float) -> Path:
    """A trainer_state.json logged every 10 steps under the Trainer's default linear decay."""
    n = len(loss)
    history = [{"loss": float(loss[i]), "learning_rate": peak_lr * (1 - i / n), "grad_norm": 0.4,
                "step": 10 * (i + 1), "epoch": round(10 * (i + 1) / 79, 4)} for i in range(n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"global_step": 10 * n, "log_history": history}), encoding="utf-8")
    return path


def _slow_loss(n: int = 30) -> np.ndarray:
    """Down to a level early, then a slow creep: 4.7 -> 3.8 -> 3.3 (a GPT-2 whose LR is 100x too high)."""
    rng = np.random.default_rng(0)
    return 3.3 + 0.55 * np.exp(-np.arange(n) / 12) + 0.8 * (np.arange(n) == 0) + rng.normal(0, 0.02, n)


def _warnings(result) -> list[str]:
    return [f.code for f in result.findings if f.severity >= Severity.WARNING]


def test_a_slow_loss_at_an_lr_as_large_as_the_weights_is_lr_too_high(tmp_path):
    result = diagnose_file(_state(tmp_path / "a" / "trainer_state.json", _slow_loss(), 0.1))
    assert "large_lr" in _warnings(result)
    assert result.cause == "lr_too_high"


def test_the_same_loss_at_an_ordinary_lr_gets_no_large_lr(tmp_path):
    result = diagnose_file(_state(tmp_path / "b" / "trainer_state.json", _slow_loss(), 1e-3))
    assert "large_lr" not in [f.code for f in result.findings]


def test_a_loss_that_fell_far_at_a_large_lr_is_information(tmp_path):
    loss = 4.0 * np.exp(-np.arange(30) / 8) + 0.2
    result = diagnose_file(_state(tmp_path / "c" / "trainer_state.json", loss, 0.1))
    assert next(f for f in result.findings if f.code == "large_lr").severity == Severity.INFO
    assert _warnings(result) == []


def _late_loss(n: int = 30) -> np.ndarray:
    """Blown up by the first steps (a first row of 360, a GPT-2's ln V is 10.8), then down 30x, most of it in the
    second half as the linear decay brings the LR down: a GPT-2 at AdamW lr 2."""
    rng = np.random.default_rng(1)
    return 360.0 * np.exp(-3.4 * (np.arange(n) / n) ** 2.5) * np.exp(rng.normal(0, 0.1, n))


def test_a_loss_that_fell_only_as_the_large_lr_decayed_is_a_warning(tmp_path):
    result = diagnose_file(_state(tmp_path / "d" / "trainer_state.json", _late_loss(), 2.0))
    found = next(f for f in result.findings if f.code == "large_lr")
    assert found.severity == Severity.WARNING and not found.evidence["little_progress"]
    assert found.evidence["progress_as_lr_decays"]["lr_fall"] >= 2
    assert result.cause == "lr_too_high"


def test_the_same_late_fall_at_an_ordinary_lr_gets_no_large_lr(tmp_path):
    result = diagnose_file(_state(tmp_path / "e" / "trainer_state.json", _late_loss(), 1e-3))
    assert "large_lr" not in [f.code for f in result.findings]


def test_a_csv_does_not_say_the_optimizer(tmp_path):
    """SGD at 0.1 is ordinary: a CSV with the same numbers gets no large_lr."""
    loss = _slow_loss()
    path = tmp_path / "metrics.csv"
    path.write_text("step,loss,lr\n" + "".join(f"{10 * (i + 1)},{v},{0.1 * (1 - i / 30)}\n"
                                               for i, v in enumerate(loss)), encoding="utf-8")
    assert "large_lr" not in [f.code for f in diagnose_file(path).findings]
