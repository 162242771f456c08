"""Adam's epsilon in float16 (issue 16: "the fp16 Adam(eps=1e-10) case trains on instead of stopping").

In float16 ``(1 - beta2) g^2`` underflows to 0 for ``|g| < 7.7e-3`` and an epsilon of 1e-8 rounds to 0, so the
first update divides by zero (keras-team/keras#11860, pytorch/pytorch#147437, CambioML/pykoi#69). A LoRA adapter
is the plainest such run: ``B`` starts at 0, so ``A``'s gradient is exactly 0 at the first step (0/0) and ``B``'s
is small; every second moment of the first step is 0, their median with them."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from _repair_runs import train_float16_regression
from trainguard.core.policies import Plan
from trainguard.core.policies.adam_epsilon import raise_adam_epsilon
from trainguard.core.policies.trial import Proposal, Repair, trials
from trainguard.core.stats import LayerStats, StepStats

torch.set_num_threads(1)


class _LoRA(nn.Module):
    """A frozen Linear plus a rank-4 update ``B A`` with ``B`` at 0 (Hu et al. 2021's initialization)."""

    def __init__(self, base: nn.Linear, rank: int = 4):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + x @ self.lora_a.t() @ self.lora_b.t()


def _fp16_lora_run(policy: str | None, eps: float = 1e-8, steps: int = 150):
    torch.manual_seed(0)
    model = nn.Sequential(_LoRA(nn.Linear(16, 32)), nn.Tanh(), nn.Linear(32, 1)).half()
    model[2].requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, eps=eps)
    x = torch.randn(256, 16)
    losses, guard = train_float16_regression(model, optimizer, x, 0.1 * torch.tanh(x @ (torch.randn(16, 1) / 4)),
                                             policy, steps)
    return losses, optimizer, guard


def test_fp16_lora_whose_every_first_second_moment_underflows_trains_on_under_auto():
    unguarded, _, _ = _fp16_lora_run(None)
    fixed, _, _ = _fp16_lora_run(None, eps=1e-4)  # the reports' fix
    assert math.isnan(unguarded[1]) and math.isnan(unguarded[-1])
    # before: no proposal (the median sqrt(v) was 0, read as "no Adam"), the chain rolled back to step 0 and stopped
    losses, optimizer, guard = _fp16_lora_run("auto")
    assert math.isnan(losses[1]) and all(math.isfinite(v) for v in losses[2:])
    assert optimizer.param_groups[0]["eps"] == pytest.approx(torch.finfo(torch.float16).tiny)
    trial = next(a for a in guard.actions if a.kind == "trial")
    assert trial.params["repair"] == "adam_epsilon" and trial.effect["kept"] is True
    tail, fixed_tail = sum(losses[-20:]) / 20, sum(fixed[-20:]) / 20
    assert tail < 2 * fixed_tail and tail < 0.3 * losses[0]


def test_an_underflow_proposal_is_kept_when_the_run_trains_on_without_beating_its_trend():
    # After an underflow the run without the change is NaN at every step: a finite loss at the level before the
    # trouble is kept (an ordinary proposal must beat the trend by 10%); one that rises above the trend is not.
    def at_step(step: int, broken: bool) -> Repair:
        return Repair("eps", lambda: None,
                      lambda stats, findings, plan, st: (Proposal("non_finite", {}, "fix", breaks_without=broken)
                                                         if stats.step == step else None, st),
                      lambda plan, params: plan)

    def verdict(broken: bool, after: float) -> dict:
        policy = trials(at_step(12, broken), window=20)
        state = policy.init()
        for step in range(40):
            loss = 1.0 + 0.01 * (step % 3) if step < 12 else after
            plan, state = policy.update(StepStats(step=step, loss=loss), (), Plan(), state)
            trial = next((a for a in plan.actions if a.kind == "trial"), None)
            if trial is not None:
                return trial.effect
        raise AssertionError("no verdict")

    assert verdict(True, 1.0)["kept"] is True
    assert verdict(False, 1.0)["kept"] is False
    assert verdict(True, 1.5)["kept"] is False


def test_adam_is_told_by_its_statistics_not_by_a_positive_sqrt_v():
    repair = raise_adam_epsilon()
    state = repair.init()
    underflowed = LayerStats(name="lora_a", adam_update_rms=2e5, adam_sqrt_v_min=0.0, adam_sqrt_v_median=0.0)
    _, state = repair.propose(StepStats(step=0, loss=0.4, layers=(underflowed,)), (), Plan(), state)
    proposal, _ = repair.propose(StepStats(step=1, loss=math.nan, loss_finite=False), (), Plan(), state)
    assert proposal is not None and proposal.breaks_without and proposal.restore_before == 0
