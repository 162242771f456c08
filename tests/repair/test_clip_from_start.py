"""``clip_from_start`` (issue 16): a plain SGD first update 10x the weights, from an exploded gradient, restarts
the run from its initial weights with the gradient norm clipped (Pascanu et al. 2013), before the next forward
pass; kept only if the loss falls and the clip then stays mostly idle."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import trainguard
from trainguard.core.policies import Plan
from trainguard.core.policies.clip_from_start import clip_from_start
from trainguard.core.stats import LayerStats, StepStats

torch.set_num_threads(1)


def _first(ratio: float, adam_rms: float | None = None, grad_norm: float = 100.0):
    layers = (LayerStats("rnn.weight_hh", update_ratio=ratio, adam_update_rms=adam_rms),
              LayerStats("rnn.bias", update_ratio=1e3, adam_update_rms=adam_rms),  # biases say nothing
              LayerStats("out.weight", update_ratio=ratio / 2, adam_update_rms=adam_rms))
    repair = clip_from_start()
    proposal, _ = repair.propose(StepStats(step=0, loss=50.0, grad_norm=grad_norm, layers=layers), (), Plan(),
                                 repair.init())
    return proposal


def test_proposed_on_a_first_sgd_update_ten_times_the_weights_only():
    proposal = _first(30.0)
    assert proposal.restore_before == 0
    assert proposal.params["clip_norm"] == pytest.approx(100.0 * 0.1 / 30.0)  # the largest ratio brought to 0.1
    assert _first(5.0) is None  # the dev corpus' healthy runs: at most 0.55
    assert _first(30.0, adam_rms=1.0) is None  # Adam's first step is lr * sign(g): lower_lr_from_start's
    assert _first(30.0, grad_norm=math.nan) is None


class _Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.RNN(2, 32, nonlinearity="relu", batch_first=True)
        self.out = nn.Linear(32, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.rnn(x)[0][:, -1])


def _rnn_run(policy: str | None, steps: int = 150):
    """A ReLU RNN over 60 steps whose recurrent kernel starts at a gain of 1.5 (the hidden state grows along the
    sequence: first loss ~2000 on unit-variance targets), plain SGD 0.01, a loop that stops at its first NaN."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1000, 60, 2, generator=gen)
    y = x[:, -5:, 0].sum(1, keepdim=True) + x[:, -1:, 1]
    y = (y - y.mean()) / y.std()
    torch.manual_seed(0)
    model = _Recurrent()
    nn.init.orthogonal_(model.rnn.weight_hh_l0, gain=1.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    guard = trainguard.Guard(model, optimizer, policy=policy) if policy else None
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, 1000, (32,), generator=gen)
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x[idx]), y[idx])
        loss.backward()
        guard.step(loss) if guard else optimizer.step()
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            break
    if guard:
        guard.close()
    return losses, guard


def test_an_rnn_whose_first_update_explodes_is_restarted_with_a_clip_and_trains():
    unguarded, _ = _rnn_run(None)
    assert len(unguarded) == 2 and math.isnan(unguarded[1])  # the first update wrecks the weights
    losses, guard = _rnn_run("auto")
    assert len(losses) == 150 and all(math.isfinite(v) for v in losses)
    trial = next(a for a in guard.actions if a.kind == "trial")
    assert trial.params["repair"] == "clip_from_start" and trial.step == 0 and trial.params["snapshot"] == 0
    assert trial.effect["kept"] is True
    assert sum(losses[-15:]) / 15 < 0.3  # 0.16; the same loop clipping at 1 by hand: 0.74


def test_a_clip_that_engages_on_every_step_is_vetoed_and_rolled_back():
    """Raw-scale polynomial features [x, x^2], x in 1..8, full-batch SGD 0.01: the gradient is large for good (the
    learning rate is too high for those features), so the clip acts as an LR cut on every step."""
    x = torch.linspace(1, 8, 16).unsqueeze(1)
    features, y = torch.cat([x, x ** 2], 1), 3 * x ** 2 - x + 20
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    guard = trainguard.Guard(model, optimizer, policy="auto")
    for _ in range(40):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(features), y)
        loss.backward()
        guard.step(loss)
    guard.close()
    trial = next(a for a in guard.actions if a.kind == "trial")
    assert trial.params["repair"] == "clip_from_start" and trial.effect["kept"] is False
    assert trial.effect["why"].startswith("the clip engaged on 21 of the 21 steps after the restart")
