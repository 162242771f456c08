"""Each seed scenario really shows its fault unguarded, and its healthy twin really trains."""
from __future__ import annotations

import math

import pytest
import torch

from trainguard.core.causes import CAUSES
from trainguard.scenarios import SCENARIOS, get_scenario
from trainguard.scenarios import adam_epsilon, batch_size_dependent_loss

# One run per (scenario, twin), shared by the tests below: the small size wherever the fault still shows there.
_cache: dict[tuple[str, bool], object] = {}


def _run(name: str, healthy: bool):
    key = (name, healthy)
    if key not in _cache:
        _cache[key] = get_scenario(name).run(healthy=healthy, size="small")
    return _cache[key]


def test_registry_names_a_known_cause_and_seed_for_every_case():
    assert list(SCENARIOS) == ["bn_inference_mode", "unscaled_data", "vanishing_gradient", "adam_epsilon",
                               "exploding_gradient", "batch_size_dependent_loss"]
    for name, scenario in SCENARIOS.items():
        assert scenario.name == name
        assert scenario.cause in CAUSES and scenario.cause != "none"
        assert scenario.seed_file.startswith(scenario.seed_id[:3] + "_")
    with pytest.raises(ValueError, match="unknown scenario 'nope'"):
        get_scenario("nope")
    with pytest.raises(ValueError, match="unknown scenario size"):
        get_scenario("unscaled_data").run(size="huge")


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_faulty_run_fails_and_healthy_twin_trains(name):
    faulty, healthy = _run(name, False), _run(name, True)
    assert faulty.failed, faulty.outcome
    assert not healthy.failed, healthy.outcome
    assert not healthy.nonfinite and not healthy.diverged
    assert healthy.losses[-1] < healthy.losses[0]


def test_unscaled_data_and_exploding_gradient_go_non_finite_within_the_first_epochs():
    unscaled = _run("unscaled_data", False)
    assert unscaled.nonfinite and unscaled.metrics["first_nonfinite_step"] < 10  # 5 steps an epoch
    exploding = _run("exploding_gradient", False)
    assert exploding.nonfinite and exploding.metrics["first_nonfinite_step"] < 16  # 16 steps an epoch
    assert exploding.metrics["peak_loss"] > 1e3 * exploding.metrics["first_loss"]
    for name in ("unscaled_data", "exploding_gradient"):
        assert _run(name, True).metrics["loss_over_target_variance"] < 0.05


def test_vanishing_gradient_predicts_a_near_constant():
    faulty, healthy = _run("vanishing_gradient", False), _run("vanishing_gradient", True)
    assert faulty.metrics["prediction_spread"] < 0.05
    assert healthy.metrics["prediction_spread"] > 0.8
    assert healthy.metrics["final_loss"] < faulty.metrics["final_loss"] / 5


def test_bn_inference_mode_stays_at_chance():
    faulty, healthy = _run("bn_inference_mode", False), _run("bn_inference_mode", True)
    assert faulty.metrics["accuracy"] < 0.3
    assert abs(faulty.metrics["final_loss"] - math.log(10)) < 0.3
    assert healthy.metrics["accuracy"] > 0.95


def test_adam_eps_1e8_blows_up_on_its_own_after_a_long_calm_phase_and_eps_1e3_does_not():
    faulty, healthy = _run("adam_epsilon", False), _run("adam_epsilon", True)
    settle, onset = int(faulty.metrics["settle_step"]), int(faulty.metrics["onset_step"])
    assert not faulty.nonfinite and not healthy.nonfinite
    # Calm: below 1e-4 from the first hundred-odd steps, for hundreds of steps, with no rise on the way.
    assert settle < 200 and onset - settle >= 300
    assert faulty.metrics["calm_loss"] < 1e-5 and max(faulty.losses[settle:onset]) < 1e-4
    # Then the loss jumps far above everything the calm phase showed, within a few steps, with nothing changed.
    assert faulty.metrics["blowup_factor"] > 100
    assert faulty.metrics["peak_loss"] > 3 * max(faulty.losses[settle:onset])
    assert onset < faulty.metrics["peak_step"] <= onset + 20
    # The twin, on the same data, goes calm too and never rises.
    assert healthy.metrics["settle_step"] < onset - 200
    assert healthy.metrics["blowup_factor"] < 2
    assert max(healthy.losses[int(healthy.metrics["settle_step"]):]) < 1e-4
    assert adam_epsilon.HEALTHY_EPS >= 1e-3 > 1e-4 > adam_epsilon.EPS


def test_adam_epsilon_twin_is_left_alone_by_the_auto_policy():
    guarded = get_scenario("adam_epsilon").run(healthy=True, guard_policy="auto", size="small")
    assert guarded.actions == ()
    assert guarded.losses == _run("adam_epsilon", True).losses  # bitwise the unguarded twin's run


def test_batch_size_dependent_loss_spikes_exactly_at_the_partial_batch():
    faulty, healthy = _run("batch_size_dependent_loss", False), _run("batch_size_dependent_loss", True)
    per_epoch = int(faulty.metrics["steps_per_epoch"])
    assert batch_size_dependent_loss.N_SAMPLES % batch_size_dependent_loss.BATCH_SIZE != 0
    # After the first epoch, the largest loss of most epochs is its last (partial) batch.
    epochs = [faulty.losses[i:i + per_epoch] for i in range(per_epoch, len(faulty.losses), per_epoch)]
    at_partial = sum(max(range(per_epoch), key=e.__getitem__) == per_epoch - 1 for e in epochs)
    assert at_partial >= 0.7 * len(epochs)
    assert faulty.metrics["median_spike_ratio"] > 3
    assert healthy.metrics["spikes"] == 0 and healthy.metrics["median_spike_ratio"] < 2


def test_a_run_leaves_the_callers_rng_and_threads_as_they_were():
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = get_scenario("unscaled_data").run(healthy=True)
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads
    assert get_scenario("unscaled_data").run(healthy=True).losses == first.losses  # reproducible
