"""The whole-series analyses on generated runs: healthy runs of many shapes get no warning, each sick run gets
its finding, and the diagnosis engine the doctor feeds names the right cause."""
from __future__ import annotations

import numpy as np
import pytest

from doctor_synth import SICK, healthy, sick, write_csv
from trainguard.core.causes import CAUSES, cause_doc_link
from trainguard.core.findings import Severity
from trainguard.doctor import diagnose_file, diagnose_series
from trainguard.doctor.analysis import analyse_series
from trainguard.doctor.series import RunSeries


def as_series(run: dict) -> RunSeries:
    n = len(run["step"])
    return RunSeries(path=__import__("pathlib").Path("synthetic"), format="synthetic", step=run["step"],
                     loss=run["loss"], lr=run["lr"], grad_norm=run["grad_norm"], batch_size=run["batch_size"],
                     epoch=run["epoch"], eval_step=run["eval_step"], eval_loss=run["eval_loss"],
                     columns={"step": "step", "epoch": "epoch"},
                     present={k: np.ones(n, dtype=bool) for k in ("lr", "grad_norm", "batch_size", "epoch")})


def warnings(findings):
    return [(f.code, f.cause, f.message) for f in findings if f.severity >= Severity.WARNING]


@pytest.mark.parametrize("seed", range(60))
def test_healthy_runs_get_no_warning(seed):
    rng = np.random.default_rng(seed + 7)
    steps = int(rng.choice([200, 1000, 3000, 12000]))
    run = healthy(seed, steps, log_every=int(rng.choice([1, 5, 10])))
    assert warnings(analyse_series(as_series(run))) == []


# Causes the log supports equally well for a kind (an LR schedule may be rising when a NaN appears).
ALSO_RIGHT = {"non_finite": {"lr_too_high"}}


@pytest.mark.parametrize("kind", SICK)
def test_sick_runs_get_their_finding_and_cause(kind):
    misses = []
    for seed in range(6):
        run = sick(kind, seed, steps=3000)
        code, cause = run["expect"]
        got = [(f.code, f.cause) for f in diagnose_series(as_series(run)) if f.severity >= Severity.WARNING]
        if not any(c == code and (k == cause or k in ALSO_RIGHT.get(kind, ())) for c, k in got):
            misses.append((seed, got))
    assert misses == []


def test_findings_carry_cause_evidence_and_a_fix_ending_with_the_doc_link(tmp_path):
    result = diagnose_file(write_csv(sick("periodic_spike", 3), tmp_path / "run.csv"))
    assert result.error is None and result.findings
    for f in result.findings:
        assert f.cause in CAUSES
        assert f.fix.endswith(cause_doc_link(f.cause))
        assert isinstance(f.evidence, dict) and f.evidence
    periodic = next(f for f in result.findings if f.code == "periodic_spike")
    run = sick("periodic_spike", 3)
    assert periodic.evidence["period_steps"] == pytest.approx(run["steps_per_epoch"], rel=0.02)
    assert periodic.evidence["at_epoch_boundary_share"] >= 0.8


def test_periodic_spikes_without_epoch_column_infer_the_period():
    run = sick("periodic_spike", 4)
    series = as_series(run)
    series.epoch = None
    found = [f for f in analyse_series(series) if f.code == "periodic_spike"]
    assert found and found[0].evidence["period_from"] == "spike spacing"
    assert found[0].evidence["period_steps"] == pytest.approx(run["steps_per_epoch"], rel=0.02)


def test_an_isolated_spike_after_a_grad_norm_run_up_is_not_confidently_a_bad_batch():
    run = sick("loss_spike", 5)
    at = int(np.argmax(run["loss"] / np.median(run["loss"])))
    clean = diagnose_file_causes(run)
    assert clean[0].code == "bad_batch" and clean[0].confidence >= 0.6
    run["grad_norm"][at - 10:at] *= 20
    causes = diagnose_file_causes(run)
    bad = next(c for c in causes if c.code == "bad_batch")
    assert bad.confidence < 0.6 and bad.evidence["grad_norm_run_up"] >= 3 and "separated_by" not in bad.evidence


def diagnose_file_causes(run):
    from trainguard.doctor.diagnose import diagnose_run

    return diagnose_run(as_series(run))[1]


def test_plateau_with_healthy_gradients_and_small_lr_is_lr_too_low():
    run = sick("plateau", 2)
    run["grad_norm"] = np.full(len(run["step"]), 0.5)
    run["lr"] = np.full(len(run["step"]), 1e-8)
    found = [f for f in diagnose_series(as_series(run)) if f.code == "plateau"]
    assert found and found[0].cause == "lr_too_low"


def test_flat_eval_loss_is_not_overfitting():
    run = healthy(11, 3000)
    run["eval_loss"] = run["eval_loss"][-1] * np.exp(np.random.default_rng(0).normal(0, 0.02, len(run["eval_loss"])))
    assert not [f for f in analyse_series(as_series(run)) if f.code == "overfitting"]


def test_non_finite_grad_norm_alone_is_information(tmp_path):
    run = healthy(5, 2000)
    run["grad_norm"][::97] = np.inf  # fp16 loss scaling skipping a few overflowing steps
    found = [f for f in analyse_series(as_series(run)) if f.code == "non_finite"]
    assert found and found[0].severity == Severity.INFO


@pytest.mark.parametrize("seed", range(12))
def test_epoch_level_logs_healthy_and_sick(tmp_path, seed):
    from doctor_synth import write_keras_csv

    rng = np.random.default_rng(seed)
    run = healthy(seed, 3000, steps_per_epoch=int(rng.choice([100, 150, 300])))
    assert warnings(diagnose_file(write_keras_csv(run, tmp_path / "ok.csv")).findings) == []
    kind = ("overfitting", "plateau", "lr_too_high")[seed % 3]
    run = sick(kind, seed, 3000)
    run["epoch"] = np.floor(run["step"] / 100)
    found = [(c, k) for c, k, _ in warnings(diagnose_file(write_keras_csv(run, tmp_path / "sick.csv")).findings)]
    assert run["expect"][0] in [c for c, _ in found]


def test_sparse_logging_of_a_long_run_that_blows_up_after_a_calm_phase():
    """Loss logged every 100 steps, no gradient norms, constant LR, blow-up at step 200k of 250k."""
    run = healthy(3, 250_000, noise=0.05, schedule="constant", log_every=100, heavy_tail=False)
    t = run["step"]
    run["loss"] = run["loss"] * np.where(t > 200_000, np.minimum(np.exp((t - 200_000) / 3000), 30), 1)
    series = as_series(run)
    series.grad_norm = None
    found = [f for f in diagnose_series(series) if f.code == "divergence"]
    assert found and found[0].cause == "adam_epsilon"
    assert abs(found[0].step - 200_000) <= 2_000


def test_epoch_end_spikes_logged_every_ten_steps_without_an_epoch_column():
    run = healthy(4, 30_000, noise=0.1, steps_per_epoch=1390, heavy_tail=False)
    ends = np.arange(1389, 30_000, 1390)
    run["loss"][ends] *= 4
    keep = np.arange(len(run["step"])) % 10 == 9
    keep[ends] = True
    series = as_series({**run, **{k: run[k][keep] for k in ("step", "loss", "lr", "grad_norm", "batch_size",
                                                              "epoch")}})
    series.epoch = series.batch_size = None
    found = [f for f in diagnose_series(series) if f.code == "periodic_spike"]
    assert found and found[0].evidence["period_steps"] == 1390
    assert found[0].cause == "batch_size_dependent_loss"


def test_datasets_taken_in_turn_are_not_an_lr_warning():
    run = healthy(1, 3000, schedule="constant", noise=0.05)
    run["loss"] *= np.array([1.0, 1.6, 0.8])[np.arange(3000) % 3]
    found = [f for f in analyse_series(as_series(run)) if f.code == "oscillation"]
    assert found and found[0].severity == Severity.INFO


def test_an_oscillation_that_comes_and_goes_is_information():
    # Two players trading (a GAN's discriminator loss): a swing in 2 of 10 windows, not past the stability edge.
    run = healthy(3, 2560, schedule="constant", noise=0.02)
    t = np.arange(2560)
    bursts = ((t // 256) % 5 == 1).astype(float)  # windows 1 and 6: not from the start
    run["loss"] = run["loss"] * np.exp(0.3 * bursts * np.sin(2 * np.pi * t / 40))
    found = [f for f in analyse_series(as_series(run)) if f.code == "oscillation"]
    assert found and found[0].severity == Severity.INFO and "comes and goes" in found[0].evidence["note"]


def test_the_loss_dipping_at_every_epochs_last_batch_is_a_batch_size_dependent_loss():
    # transformers#6969: the summed loss divided by the configured batch size reads 40/96 of its value on the
    # last, smaller batch of every 11-step epoch; the log has only step and loss.
    run = healthy(5, 330, schedule="constant", noise=0.1)
    t = np.arange(330)
    run["loss"] = run["loss"] * np.where(t % 11 == 10, 40 / 96, 1.0)
    series = as_series(run)
    series.epoch = series.batch_size = None
    found = [f for f in diagnose_series(series) if f.code == "periodic_spike"]
    assert found and found[0].evidence["direction"] == "dip" and found[0].evidence["period_steps"] == 11
    assert found[0].cause == "batch_size_dependent_loss"
    # Dips as deep at random steps are no pattern.
    rng = np.random.default_rng(0)
    scattered = healthy(5, 330, schedule="constant", noise=0.1)
    scattered["loss"] = scattered["loss"] * np.where(np.isin(t, rng.choice(330, 30, replace=False)), 40 / 96, 1.0)
    series = as_series(scattered)
    series.epoch = series.batch_size = None
    assert not [f for f in diagnose_series(series) if f.code == "periodic_spike"]
