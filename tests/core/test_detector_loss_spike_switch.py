"""``loss_spike`` on a switch to harder data (Bengio et al. 2009's curriculum stages): the loss jumps, falls fast in
the first steps and then slowly towards the harder data's higher floor. That is learned down (INFO), while a jump
that comes partly down and then stays is still a level shift (WARNING), judged at most ``learn_blocks`` blocks of
``settle_steps`` after the onset."""
from __future__ import annotations

import numpy as np

from trainguard.core.detector import replay
from trainguard.core.detectors.loss_spike import loss_spike
from trainguard.core.findings import Severity
from trainguard.core.stats import StepStats


def _stream(losses):
    return [StepStats(step=i, loss=float(x), grad_norm=1.0) for i, x in enumerate(losses)]


def _switch(after_jump: np.ndarray, seed: int = 0) -> np.ndarray:
    """300 steps at ~0.03, then a jump to 0.86 at step 300 and ``after_jump``, each with 15% batch noise."""
    rng = np.random.default_rng(seed)
    losses = np.concatenate([np.full(300, 0.03), [0.86], after_jump])
    return losses * (1.0 + 0.15 * rng.uniform(-1.0, 1.0, len(losses)))


def test_a_harder_stage_learned_down_slowly_is_info():
    # the corpus-like curve: ~0.62 over the first 50 steps after the jump (a fast fall in the first few), then a
    # slow decline (0.53 over the next 50, 0.32 after 600 steps), as tests/corpus/test_harder_data_later.py measures
    t = np.arange(1, 600)
    after = 0.30 + 0.32 * np.exp(-t / 180.0) + 0.25 * np.exp(-t / 2.0)
    for seed in range(5):
        found, _ = replay(loss_spike(), _stream(_switch(after, seed)))
        at_switch = [f for f in found if f.step == 300]
        assert [(f.severity, f.evidence["outcome"]) for f in at_switch] == [(Severity.INFO, "recovered")], seed
        assert all(f.severity == Severity.INFO for f in found)


def test_a_jump_that_comes_partly_down_and_stays_is_a_level_shift():
    t = np.arange(1, 400)
    after = 0.45 + 0.4 * np.exp(-t / 3.0)  # 0.86 -> 0.45 in ten steps, then flat: 15x the level it left
    found, _ = replay(loss_spike(), _stream(_switch(after)))
    assert [(f.step, f.severity, f.evidence["outcome"], f.evidence["judged_at"]) for f in found] == [
        (300, Severity.WARNING, "level_shift", 500)]
