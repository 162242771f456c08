"""``module_mode``: eval mode left on after a mid-epoch evaluation (wkentaro/pytorch-fcn#57) is a WARNING once the
modes are seen switching while the model trains; a model kept in eval mode throughout stays INFO. Real training
of a small Dropout network, with the modes sampled every step (a custom preset)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import trainguard
from trainguard.core.detector import replay
from trainguard.core.detectors.module_mode import module_mode
from trainguard.core.findings import Severity
from trainguard.core.presets import Preset
from trainguard.core.stats import StepStats

torch.set_num_threads(1)

EVERY_STEP = Preset("modes every step", layer_every=25, mode_every=1, data_batches=3, fetch_every=25)


def _train(loop: str, epochs: int = 4, per_epoch: int = 20, validate_every: int = 15,
           preset: Preset | str = EVERY_STEP) -> list:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    guard = trainguard.Guard(model, optimizer, policy="observe", preset=preset)
    generator = torch.Generator().manual_seed(1)
    step = 0
    for _ in range(epochs):
        model.train() if loop != "frozen" else model.eval()
        for _ in range(per_epoch):
            if step % validate_every == 0:  # a mid-epoch evaluation
                model.eval()
                with torch.no_grad():
                    model(torch.randn(4, 8, generator=generator))
                if loop == "fixed":
                    model.train()
            x = torch.randn(16, 8, generator=generator)
            loss = F.cross_entropy(model(x), (x[:, 0] > 0).long())
            optimizer.zero_grad()
            loss.backward()
            guard.step(loss, inputs=x)
            step += 1
    guard.close()
    return [f for f in guard.findings if f.code == "eval_mode_modules"]


def test_eval_mode_left_on_after_a_mid_epoch_evaluation_is_a_warning():
    # Eval from step 0 to 19, train mode from 20 (the next epoch), eval again from 30 (the evaluation at 30).
    found = _train("leaky")
    assert [(f.step, f.severity) for f in found][:2] == [(0, Severity.INFO), (30, Severity.WARNING)]
    assert found[1].evidence["rule"] == "switching" and found[1].evidence["modules"] == ["2"]


def test_the_fixed_loop_and_a_model_kept_in_eval_mode_are_not_warnings():
    assert _train("fixed") == []
    frozen = _train("frozen")  # eval mode throughout: a deliberate choice as far as the modes tell
    assert [(f.step, f.severity) for f in frozen] == [(0, Severity.INFO)]


def test_a_freeze_that_ends_once_stays_info():
    # Fine-tuning: BatchNorm frozen for 50 steps, then unfrozen for good.
    stream = [StepStats(step=i, eval_mode_modules=("bn",) if i < 50 else ()) for i in range(200)]
    assert [(f.step, f.severity) for f in replay(module_mode(), stream)[0]] == [(0, Severity.INFO)]


def test_the_switching_is_reported_once():
    stream = [StepStats(step=i, eval_mode_modules=("drop",) if (i // 10) % 2 == 0 else ()) for i in range(100)]
    found = replay(module_mode(), stream)[0]
    assert [(f.step, f.severity) for f in found] == [(0, Severity.INFO), (20, Severity.WARNING)]


def test_the_default_sampling_does_not_alias_with_a_round_evaluation_period():
    # An evaluation every 25 iterations, train mode set again only at each epoch's start (40 steps): eval mode
    # at every multiple of 25. Sampled every 25 steps, the run looked frozen in eval mode (INFO only).
    found = _train("leaky", epochs=4, per_epoch=40, validate_every=25, preset="standard")
    assert Severity.WARNING in [f.severity for f in found]
