"""No warning where the run is not harmed, on the coarse logs people have: a ``trainer_state.json`` whose first row
is the mean of a fast first descent, a run that converged within its first rows, a noisy log subsampled every few
steps, a GAN's two losses, a policy-gradient loss that changes sign, a first loss far above unit scale that the
run brought down. And the harm each analysis is there for still warns: a loss stuck from its first epoch."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from _minibatch import minibatch_losses
from trainguard.core.findings import Severity
from trainguard.doctor import diagnose_file


def _warnings(result) -> list[str]:
    return [f.code for f in result.findings if f.severity >= Severity.WARNING]


def _finding(result, code: str):
    return next(f for f in result.findings if f.code == code)


def _csv(path: Path, columns: dict[str, np.ndarray]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(list(columns))
        writer.writerows(zip(*(np.asarray(v).tolist() for v in columns.values())))
    return path


def _regression_losses(steps: int = 600) -> list[float]:
    """A linear regression under SGD at lr 0.1, batch 16: from ~10 to its noise floor (~0.1) in about 15 steps."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(1024, 8, generator=g)
        y = x @ torch.randn(8, 1, generator=g) + 0.3 * torch.randn(1024, 1, generator=g)
        torch.manual_seed(0)
        model = nn.Linear(8, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        return minibatch_losses(model, opt, x, y, nn.functional.mse_loss, 16, steps, g)
    finally:
        torch.set_num_threads(threads)


def test_a_fast_first_descent_in_a_trainer_state_is_no_spike(tmp_path):
    """The first row, the mean of the first ``logging_steps`` losses, stands far above a block-median trend that
    lags the descent; nothing rose into it, so it is not a spike, and the run that follows is no plateau."""
    losses = _regression_losses()
    assert losses[0] > 50 * float(np.median(losses[-100:]))  # the descent the log must not mistake
    for logging_steps in (5, 10, 20):
        history = [{"loss": float(np.mean(losses[i:i + logging_steps])), "learning_rate": 0.1,
                    "step": i + logging_steps, "epoch": round((i + logging_steps) / 64, 4)}
                   for i in range(0, len(losses) - logging_steps + 1, logging_steps)]
        state = tmp_path / str(logging_steps) / "trainer_state.json"
        state.parent.mkdir()
        state.write_text(json.dumps({"global_step": len(losses), "log_history": history}), encoding="utf-8")
        assert _warnings(diagnose_file(state)) == [], logging_steps


def test_one_spike_the_loss_recovers_from_is_information_three_warn(tmp_path):
    """The same run logged every step with a corrupt batch (1e3x) mid-run: the loss recovers, information, and the
    engine still reads a bad batch; three such batches are repeated harm, a warning."""
    losses = np.array(_regression_losses())
    losses[400] *= 1e3
    result = diagnose_file(_csv(tmp_path / "one.csv", {"step": np.arange(len(losses)), "loss": losses}))
    spike = _finding(result, "loss_spike")
    assert spike.step == 400 and spike.severity == Severity.INFO and _warnings(result) == []
    assert result.cause == "bad_batch"
    losses[[250, 520]] *= 1e3
    result = diagnose_file(_csv(tmp_path / "three.csv", {"step": np.arange(len(losses)), "loss": losses}))
    assert sorted(f.step for f in result.findings if f.severity >= Severity.WARNING) == [250, 400, 520]


def test_a_spike_after_which_the_loss_stays_up_warns(tmp_path):
    """A level shift: a corrupt batch (1e3x), after which the loss settles 1.6x above where it was."""
    losses = np.array(_regression_losses())
    losses[400] *= 1e3
    losses[401:] *= 1.6
    result = diagnose_file(_csv(tmp_path / "m.csv", {"step": np.arange(len(losses)), "loss": losses}))
    assert "loss_spike" in _warnings(result)
    assert _finding(result, "loss_spike").evidence["level_shift"]


def test_a_data_switch_that_fits_in_one_coarse_row_is_information(tmp_path):
    """A curriculum switch (the loss jumps 20x and is learned down within ~40 steps) logged as means of 25 steps:
    one high row that the loss comes back from, information (it was a warning and a bad batch)."""
    rng = np.random.default_rng(0)
    t = np.arange(2000)
    level = 0.1 + 2.0 * np.exp(-t / 100)
    level[1000:] = level[1000] * (1 + 19 * np.exp(-(t[1000:] - 1000) / 40))
    loss = (level * np.exp(rng.normal(0, 0.15, 2000))).reshape(-1, 25).mean(axis=1)
    result = diagnose_file(_csv(tmp_path / "m.csv", {"step": np.arange(24, 2000, 25), "loss": loss}))
    assert _warnings(result) == []


def test_a_run_converged_within_its_first_rows_is_no_plateau(tmp_path):
    """400 rows; the loss falls from 0.25 to its floor 0.0145 within 4 rows and stays there: converged, not stuck
    (the first tenth's median is already the floor)."""
    rng = np.random.default_rng(0)
    loss = 0.0145 * np.exp(rng.normal(0, 0.05, 400))
    loss[:4] = [0.25, 0.08, 0.03, 0.018]
    result = diagnose_file(_csv(tmp_path / "m.csv", {"step": np.arange(400), "loss": loss}))
    assert _warnings(result) == []


def test_a_lucky_low_first_row_of_a_noisy_subsampled_log_is_no_plateau(tmp_path):
    """Every 10th loss of a noisy regression (point-to-point noise ~0.4 in log units) whose level falls 0.46 ->
    0.17; the first row happens to be a low sample. The level kept falling: no stall."""
    rng = np.random.default_rng(0)
    level = 0.17 + 0.29 * np.exp(-np.arange(400) / 60)
    loss = level * np.exp(rng.normal(0, 0.45, 400))
    loss[0] = 0.3 * level[0]
    result = diagnose_file(_csv(tmp_path / "m.csv", {"step": np.arange(9, 4000, 10), "loss": loss}))
    assert "plateau" not in _warnings(result)


def test_a_gan_whose_losses_balance_is_no_plateau_warning(tmp_path):
    """A GAN's discriminator loss stays near 2 ln 2 (the game's equilibrium) and its generator's near ln 2, logged
    every 10 steps as means: the doctor reads the first loss and calls its flatness information."""
    rng = np.random.default_rng(1)
    steps = np.arange(10, 2510, 10)
    loss_d = 1.24 + 0.12 * np.linspace(0, 1, len(steps)) + rng.normal(0, 0.005, len(steps))
    loss_g = 0.7 + rng.normal(0, 0.01, len(steps))
    result = diagnose_file(_csv(tmp_path / "gan.csv", {"step": steps, "loss_d": loss_d, "loss_g": loss_g}))
    assert _warnings(result) == []
    plateau = _finding(result, "plateau")
    assert plateau.severity == Severity.INFO and "loss_g" in plateau.evidence["note"]


def test_a_policy_gradient_loss_that_changes_sign_and_climbs_is_information(tmp_path):
    """REINFORCE's -return x log-probability: negative early, then larger and positive as episodes lengthen."""
    rng = np.random.default_rng(2)
    t = np.arange(300)
    loss = np.where(t < 170, -2.4 * t / 170, -2.4 + 8.6 * (t - 170) / 130) + rng.normal(0, 0.3, 300)
    means = loss.reshape(30, 10).mean(axis=1)
    result = diagnose_file(_csv(tmp_path / "pg.csv", {"step": np.arange(9, 300, 10), "loss": means}))
    assert _warnings(result) == []
    assert _finding(result, "divergence").severity == Severity.INFO


def test_a_positive_loss_that_climbs_is_still_an_error(tmp_path):
    rng = np.random.default_rng(2)
    t = np.arange(300)
    loss = np.where(t < 150, 2.0 * np.exp(-t / 40), 2.0 * np.exp(-150 / 40) * np.exp((t - 150) / 30)) + 0.05
    loss *= np.exp(rng.normal(0, 0.05, 300))
    result = diagnose_file(_csv(tmp_path / "m.csv", {"step": t, "loss": loss}))
    assert _finding(result, "divergence").severity == Severity.ERROR


def test_a_first_loss_above_1e3_brought_to_unit_scale_is_information(tmp_path):
    """First loss 1.7e3, last 1.9 (down 900x, not 1e3x): the model learned the scale; the run is not harmed."""
    loss = 1.9 + 1700 * np.exp(-np.arange(200) / 8.0)
    result = diagnose_file(_csv(tmp_path / "m.csv", {"step": np.arange(200), "loss": loss}))
    finding = _finding(result, "loss_scale")
    assert finding.severity == Severity.INFO
    assert "loss_scale" not in _warnings(result)


def test_a_loss_stuck_from_its_first_epoch_still_warns(tmp_path):
    """Ten epochs of a Keras CSVLogger at a learning rate far too low: 2.03 -> 1.98, never 10% below the first."""
    loss = 2.033 - 0.006 * np.arange(10)
    result = diagnose_file(_csv(tmp_path / "training.csv", {"epoch": np.arange(10), "loss": loss}))
    assert "plateau" in _warnings(result)


def test_a_flat_noisy_loss_subsampled_every_100_steps_is_no_divergence(tmp_path):
    """A mixup run's training loss (each batch mixes a new lambda: 0.2-1.4 around a flat ~1.1) read every 100
    steps, as in the healthy corpus: 15 rows whose lowest 3-row median is the noise's, not a level it held."""
    loss = [1.003, 1.32, 1.411, 1.324, 0.928, 1.14, 1.183, 0.674, 0.611, 1.109, 1.244, 0.293, 0.306, 1.343, 1.289]
    result = diagnose_file(_csv(tmp_path / "m.csv", {"step": np.arange(99, 1500, 100), "loss": loss}))
    assert _warnings(result) == []


def test_two_players_losses_that_trade_are_no_oscillation_warning(tmp_path):
    """A GAN's discriminator loss swings with a period of ~40 steps as the players trade: information."""
    rng = np.random.default_rng(4)
    t = np.arange(750)
    loss_d = 1.3 * np.exp(0.15 * np.sin(2 * np.pi * t / 42.7) + rng.normal(0, 0.03, len(t)))
    loss_g = 0.8 * np.exp(-0.15 * np.sin(2 * np.pi * t / 42.7) + rng.normal(0, 0.03, len(t)))
    result = diagnose_file(_csv(tmp_path / "gan.csv", {"step": t, "loss_d": loss_d, "loss_g": loss_g}))
    assert _finding(result, "oscillation").severity == Severity.INFO
    assert _warnings(result) == []


def _fp16_state(path: Path, grad_norms: list[float]) -> Path:
    """A trainer_state.json of an fp16 run logged every step: a falling loss and the given gradient norms."""
    history = [{"loss": 2.0 * 0.99 ** i, "grad_norm": g, "learning_rate": 1e-4, "step": i + 1, "epoch": i / 100}
               for i, g in enumerate(grad_norms)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"log_history": history}), encoding="utf-8")  # Infinity, as HF's json.dumps writes
    return path


def test_the_loss_scale_calibrating_at_the_start_of_an_fp16_run_is_information(tmp_path):
    """GradScaler starts at 2^16 and halves on each overflow: 4 skipped steps at the start of 60, then none."""
    norms = [float("inf")] * 4 + [1.0] * 56
    result = diagnose_file(_fp16_state(tmp_path / "a" / "trainer_state.json", norms))
    assert _finding(result, "non_finite").severity == Severity.INFO
    assert _warnings(result) == []


def test_overflows_that_go_on_after_the_calibration_warn(tmp_path):
    norms = [float("inf")] * 4 + [1.0 if i % 8 else float("inf") for i in range(56)]
    result = diagnose_file(_fp16_state(tmp_path / "b" / "trainer_state.json", norms))
    assert _finding(result, "non_finite").severity == Severity.WARNING


def test_a_cause_without_a_warning_is_printed_as_a_suspicion(tmp_path):
    """The engine may name a suspect on a log with no harm found (here a loss that fell only once the LR decayed,
    lr_too_high's usual suspect); the report must not present it as the run's diagnosis."""
    from rich.console import Console

    from trainguard.doctor.console import print_diagnoses

    t = np.arange(40)
    loss = np.where(t < 20, 5.0, 5.0 * np.exp(-(t - 20) / 6.0)) * (1 + 0.01 * np.sin(t))
    result = diagnose_file(_csv(tmp_path / "m.csv", {"step": t, "loss": loss, "lr": 0.1 * (1 - t / 40)}))
    assert _warnings(result) == [] and result.causes
    console = Console(record=True, width=200)
    print_diagnoses([result], console)
    assert "no finding at warning: the run may be fine" in console.export_text()
