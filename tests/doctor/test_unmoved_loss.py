"""A loss that never moved from its first value under a small logged LR: the engine's usual suspect is the learning
rate (0.5), not an even tie with dead, vanishing or saturated units, which leave the output layer its gradient
and so bring the loss down to a trivial predictor's level at a working LR (LOMO#50: plain SGD at 5e-5)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from trainguard.core.findings import Severity
from trainguard.doctor import diagnose_file

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from _minibatch import minibatch_losses, step_loss_lr_csv  # noqa: E402

CLASSES = 50  # an LM-sized label set: ln 50 is no trivial level the log can recognise


def _sgd_run(lr: float, steps: int = 300) -> np.ndarray:
    """A 2-layer MLP over 50 learnable classes, plain SGD at ``lr``; the loss every step."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2048, 32, generator=g)
    y = (x @ torch.randn(32, CLASSES, generator=g)).argmax(dim=1)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, CLASSES))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    return np.array(minibatch_losses(model, opt, x, y, nn.functional.cross_entropy, 32, steps, g))


def test_sgd_at_5e_5_that_never_moved_is_lr_too_low(tmp_path):
    result = diagnose_file(step_loss_lr_csv(tmp_path / "tiny.csv", _sgd_run(5e-5), 5e-5))
    assert "plateau" in [f.code for f in result.findings if f.severity >= Severity.WARNING]
    assert result.cause == "lr_too_low" and result.causes[0].confidence < 0.6
    assert result.causes[0].evidence["stall"]["never_improved"]


def test_the_same_model_at_a_working_lr_trains_and_gets_no_cause(tmp_path):
    losses = _sgd_run(0.2)
    assert np.median(losses[-30:]) < 0.5 * np.median(losses[:30])
    assert diagnose_file(step_loss_lr_csv(tmp_path / "ok.csv", losses, 0.2)).cause == "none"


def _stuck(level: float, n: int = 400) -> np.ndarray:
    rng = np.random.default_rng(0)
    return level * np.exp(rng.normal(0, 0.005, n))


def test_a_loss_stuck_at_a_trivial_level_stays_uncertain_at_a_small_lr(tmp_path):
    # ln 2: a binary classifier predicting the class prior, what dead or vanishing hidden units leave.
    result = diagnose_file(step_loss_lr_csv(tmp_path / "ln2.csv", _stuck(math.log(2)), 5e-5))
    assert result.cause == "uncertain"


def test_an_unmoved_loss_at_an_ordinary_lr_is_not_read_as_too_low(tmp_path):
    result = diagnose_file(step_loss_lr_csv(tmp_path / "ordinary.csv", _stuck(4.1), 1e-2))
    assert "lr_too_low" not in [c.code for c in result.causes]

