from __future__ import annotations

import doctest
import importlib

import numpy as np

from _seed003 import seed003_stream
from trainguard.core.detectors import divergence
from trainguard.core.findings import Severity
from trainguard.core.detector import replay
from trainguard.core.stats import StepStats


def run(detector, losses):
    return replay(detector, [StepStats(step=step, loss=float(loss)) for step, loss in enumerate(losses)])[0]


def decaying(n, start=2.0, end=0.2, noise=0.1, seed=0):
    clean = start * (end / start) ** (np.arange(n) / (n - 1))
    return clean * (1.0 + noise * np.random.default_rng(seed).uniform(-1.0, 1.0, n))


def test_docstring_example():
    module = importlib.import_module("trainguard.core.detectors.divergence")
    assert doctest.testmod(module).failed == 0


def test_a_blow_up_far_above_the_best_and_the_start_is_an_error_after_three_steps():
    losses = np.concatenate([decaying(300), [0.5, 1.5, 5.0, 30.0, 100.0, 300.0]])
    found = run(divergence(), losses)
    assert len(found) == 1
    finding = found[0]
    # Step 304 (100.0) is above 10x the best (~0.23) and the start (~2), climbed to: 3.3x, 6x, 3.3x a step.
    assert (finding.step, finding.severity, finding.evidence["rule"]) == (304, Severity.ERROR, "diverged")
    assert finding.evidence["ratio_to_best"] > 10
    assert finding.where is None


def test_a_loss_creeping_back_up_is_a_warning_then_an_error():
    rise = np.geomspace(0.2, 40.0, 200)  # gives back its progress over 200 steps, then keeps going
    found = run(divergence(), np.concatenate([decaying(300), rise]))
    assert [f.severity for f in found] == [Severity.WARNING, Severity.ERROR]
    warning, error = found
    assert warning.evidence["rule"] == "rising" and warning.evidence["progress_given_back"] >= 0.25
    assert error.evidence["loss"] > 10 * error.evidence["best_smoothed_loss"]
    assert error.evidence["loss"] > error.evidence["start_loss"]


def test_a_converged_run_wobbling_near_zero_is_not_diverging():
    # 2.3 -> 0.001, then the loss triples: 0.1% of the progress given back.
    losses = np.concatenate([np.geomspace(2.3, 0.001, 500), decaying(300, 0.001, 0.004, noise=0.5)])
    assert run(divergence(), losses) == []


def test_single_step_blow_ups_are_not_divergence():
    losses = decaying(300)
    losses[[100, 200, 201]] = 50.0  # spikes: loss_spike's findings, not a divergence
    assert run(divergence(), losses) == []


def test_negative_losses_are_not_judged():
    assert run(divergence(), np.concatenate([np.linspace(-1.0, -5.0, 100), np.linspace(-5.0, 50.0, 100)])) == []


def test_non_finite_losses_are_skipped():
    losses = decaying(300)
    losses[100:103] = [np.nan, np.inf, -np.inf]
    assert run(divergence(), losses) == []


def test_seed003_diverges_at_step_6_before_the_nan():
    detector, state = divergence(), divergence().init()
    found = []
    for stats in seed003_stream("exploding"):
        f, state = detector.update(stats, state)
        found.extend(f)
    assert [(f.step, f.severity) for f in found] == [(6, Severity.ERROR)]  # climbed 44x, 7000x, 6.5e12x


def test_seed003_healthy_twin_does_not_diverge():
    detector, state = divergence(), divergence().init()
    for stats in seed003_stream("healthy"):
        found, state = detector.update(stats, state)
        assert found == ()


def run_lr(detector, losses, lrs):
    return replay(detector, [StepStats(step=i, loss=float(l), lrs=(float(r),))
                             for i, (l, r) in enumerate(zip(losses, lrs))])[0]


def test_a_curriculum_switch_the_run_learns_down_from_is_not_divergence():
    # New data at step 300: the loss jumps 30x above its best, above the start, then is learned down (tau 40 steps).
    t = np.arange(300)
    losses = np.concatenate([decaying(300), 0.2 * (1.0 + 29.0 * np.exp(-t / 40.0)) * (1 + 0.05 * np.sin(t))])
    assert run(divergence(), losses) == []


def test_warm_restarts_raising_the_loss_are_not_divergence():
    # SGDR: every 200 steps the LR jumps back to its peak and the loss rises 3x for a while, then falls again.
    t = np.arange(800)
    lrs = 0.1 * 0.5 * (1 + np.cos(np.pi * (t % 200) / 200))
    losses = decaying(800, 2.0, 0.05) * (1.0 + 2.0 * np.exp(-(t % 200) / 30.0) * (t >= 200))
    assert run_lr(divergence(), losses, lrs) == []


def test_a_loss_that_went_negative_is_not_judged_afterwards():
    # A policy gradient's loss: once it has been <= 0 it has no scale; later positive swings are not divergence.
    losses = np.concatenate([decaying(100, 1.0, 0.1), [-0.05] * 5, np.geomspace(0.1, 50.0, 100)])
    assert run(divergence(), losses) == []


def test_a_loss_that_climbs_and_stays_high_is_an_error_after_100_steps():
    # A learning rate 100x too high that stalls high instead of exploding: 4.8 -> ~170 and stays there.
    losses = np.concatenate([decaying(100, 5.0, 4.8, noise=0.02), np.geomspace(4.8, 170.0, 20),
                             170.0 * (1.0 + 0.1 * np.random.default_rng(1).uniform(-1, 1, 150))])
    found = run(divergence(), losses)
    assert [(f.severity, f.evidence["rule"]) for f in found][-1] == (Severity.ERROR, "diverged")
    assert found[-1].step >= 100 + 100


def test_a_learning_rate_100x_too_high_climbing_in_a_few_steps_is_an_error_at_once():
    # HF Trainer, GPT-2 at lr 1.0 (the corpus' hf_gpt2_lr_diverge): 4 -> 479 in a handful of steps, then it slowly
    # comes down with the decaying LR; a data switch jumps in one step instead.
    losses = np.concatenate([[4.0, 3.9, 3.8, 15.0, 60.0, 200.0, 479.0, 632.0], np.linspace(600.0, 100.0, 100)])
    found = run(divergence(), losses)
    assert [(f.step, f.severity) for f in found] == [(5, Severity.ERROR)]


def test_a_loss_that_jumps_far_above_its_start_and_only_slowly_comes_down_is_a_warning():
    # The corpus' hf_gpt2_lr_diverge (GPT-2 at lr 2): 4 -> 140 -> ~570 in a few steps, then down to ~12 over 300
    # steps as the learning rate decays. Neither a climb at the end nor stuck (it halves from its peak), yet for a
    # hundred steps the model is far worse than at its initialization.
    noise = 1.0 + 0.1 * np.random.default_rng(3).uniform(-1.0, 1.0, 296)
    losses = np.concatenate([[4.0, 140.0, 242.0, 371.0], np.geomspace(570.0, 12.0, 296) * noise])
    found = run(divergence(), losses)
    assert [(f.step, f.severity, f.evidence["rule"]) for f in found] == [(100, Severity.WARNING, "far_above_start")]
    assert found[0].evidence["steps"] == 100


def test_a_switch_to_data_harder_than_the_start_that_is_learned_down_is_not_far_above_it():
    # A curriculum switch 50x above the level it left (and 5x above the start), learned down over ~100 steps.
    t = np.arange(300)
    losses = np.concatenate([decaying(300), 0.2 * (1.0 + 49.0 * np.exp(-t / 40.0))])
    assert run(divergence(), losses) == []


def test_a_run_that_halved_its_loss_then_climbs_back_half_again_is_a_warning():
    # The corpus' hf_gpt2_lr_climb (GPT-2 at lr 0.1, constant): 4.0 -> 1.45 in 60 steps, then back to ~2.6.
    rng = np.random.default_rng(5)
    losses = np.concatenate([np.geomspace(4.0, 1.45, 60), np.linspace(1.45, 2.6, 150), np.full(90, 2.6)])
    losses = losses * (1.0 + 0.05 * rng.uniform(-1.0, 1.0, len(losses)))
    found = run_lr(divergence(), losses, np.full(len(losses), 0.1))
    assert [(f.severity, f.evidence["rule"]) for f in found] == [(Severity.WARNING, "rising")]
    assert found[0].step < 300


def test_a_loss_that_rises_without_having_learned_first_is_a_gans_not_divergence():
    # A GAN's generator: its loss starts at 0.66 and climbs to ~1.05 as the discriminator learns, then eases.
    rng = np.random.default_rng(6)
    losses = np.concatenate([np.linspace(0.66, 1.05, 300), np.linspace(1.05, 0.75, 700)])
    losses = losses * (1.0 + 0.05 * rng.uniform(-1.0, 1.0, len(losses)))
    assert run_lr(divergence(), losses, np.full(len(losses), 2e-4)) == []


def test_bad_batches_around_a_switch_to_harder_data_are_not_a_climb():
    # Two of 1,200 heavy-tailed healthy draws (replay_detectors --synthetic 600 --seed 0, draws 402 and 525): a bad
    # batch 4.3x the level, a 47x switch, then another bad batch 4.8x above it. Three rises >= 3.2x in a row, but
    # the first bad batch is no new high: the window holds earlier bad batches as high.
    level = 1.0
    rng = np.random.default_rng(0)
    for bad in ([5.4, 4.2, 7.1], [3.9, 6.6]):
        losses = list(decaying(200, 6.5, level, noise=0.05))
        for at, factor in zip(rng.choice(np.arange(180, 195), len(bad), replace=False), bad):
            losses[at] *= factor  # bad batches in the last 25 steps, up to 7x the level
        losses += [level * 4.3, level * 44.6, level * 213.0, level * 44.7] + list(np.geomspace(40.0, 2.0, 60))
        assert run(divergence(), losses) == []


def test_a_climb_to_new_highs_is_still_an_error_when_it_starts_from_a_dip():
    # The corpus' torch_facerec_lr01_nan (lr 0.1) before its NaN: 3.5, 7.1, 22, 4.8, 49, 2929, 8.6e14.
    losses = list(decaying(90, 3.9, 2.0, noise=0.2)) + [3.5, 7.1, 22.0, 4.8, 49.0, 2929.0, 8.6e14]
    assert [(f.step, f.severity) for f in run(divergence(), losses)] == [(96, Severity.ERROR)]
