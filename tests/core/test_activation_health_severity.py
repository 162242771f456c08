"""Severity of the activation findings (docs/severity.md): a sparse ReLU layer and a model that has not started to
learn yet are noteworthy (INFO); a dead layer and an output constant to three digits harm the run (WARNING)."""
from __future__ import annotations

import pytest

from trainguard.core.detector import replay
from trainguard.core.detectors import activation_health
from trainguard.core.findings import Severity
from trainguard.core.stats import ActivationStats, StepStats, TensorSummary

torch = pytest.importorskip("torch")

import trainguard  # noqa: E402


def _train(model: torch.nn.Module, inputs, targets, steps: int = 120) -> list:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    guard = trainguard.Guard(model, opt, policy="observe")
    for step in range(steps):
        x, y = inputs(step), targets(step)
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        guard.step(loss, batch_size=len(x))
        opt.step()
    guard.close()
    return [f for f in guard.findings if f.code == "dead_relu"]


def test_a_policy_net_with_dropout_before_its_relu_on_small_correlated_batches_is_sparse_not_dead():
    # The corpus' REINFORCE policy: Dropout(0.6) before the ReLU, an episode's dozen nearly equal states a batch.
    # Most units have no positive output over such a batch, yet they are not dead: the next batch wakes others.
    torch.manual_seed(0)
    policy = torch.nn.Sequential(torch.nn.Linear(4, 128), torch.nn.Dropout(0.6), torch.nn.ReLU(),
                                 torch.nn.Linear(128, 2))
    centres = torch.randn(120, 1, 4) * 0.05
    dead = _train(policy, lambda s: centres[s] + 0.01 * torch.randn(12, 4), lambda s: torch.randint(0, 2, (12,)))
    assert dead and all(f.severity == Severity.INFO for f in dead), [(f.severity, f.message) for f in dead]
    assert all(0.5 < f.evidence["dead_fraction"] < 0.95 for f in dead)


def test_a_relu_layer_killed_by_its_bias_is_a_warning():
    # DLRM's bias init (pytorch/benchmark#1927): a bias far below the pre-activations kills every unit.
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    with torch.no_grad():
        model[0].bias.fill_(-20.0)
    dead = _train(model, lambda s: torch.randn(64, 4), lambda s: torch.randint(0, 2, (64,)))
    assert [(f.severity, f.where) for f in dead][:1] == [(Severity.WARNING, "1")]
    assert dead[0].evidence["dead_fraction"] == 1.0


def _sampled(dead: list[float], output_std: list[float]) -> list[StepStats]:
    return [StepStats(step=25 * i, loss=1.0, targets=TensorSummary(0.5, 0.5, 1.0) if i == 0 else None,
                      activations=(ActivationStats("relu1", "relu", dead_fraction=d, output_std=1.0),
                                   ActivationStats("(output)", "output", output_std=s)))
            for i, (d, s) in enumerate(zip(dead, output_std))]


def test_a_sparse_layer_that_dies_is_reported_again_at_warning_once():
    found, _ = replay(activation_health(), _sampled([0.7, 0.8, 0.97, 0.99, 0.93, 0.98, 0.99], [0.5] * 7))
    assert [(f.severity, f.step) for f in found] == [(Severity.INFO, 25), (Severity.WARNING, 75)]


def test_an_output_that_has_not_started_to_learn_is_info_and_a_constant_one_a_warning():
    # The corpus' healthy 1-D convnet: 2% of the targets' std for 150 steps at ln 2, then it learns.
    waiting, _ = replay(activation_health(), _sampled([0.1] * 6, [0.01, 0.009, 0.0095, 0.012, 0.0097, 0.0094]))
    assert [(f.code, f.severity) for f in waiting] == [("output_collapse", Severity.INFO)]
    # A dead output unit or a saturated sigmoid stack: the same answer for every input, to 1e-6.
    constant, _ = replay(activation_health(), _sampled([0.1] * 6, [5e-7] * 6))
    assert [(f.code, f.severity, f.step) for f in constant] == [("output_collapse", Severity.WARNING, 50)]
    assert constant[0].evidence["output_to_target_std"] == pytest.approx(1e-6)


def _tanh_output_run(worst_grad: float, saturated: float = 0.57, steps: int = 600) -> list[StepStats]:
    """One sample in ten stays at loss 0.57 (a tanh output unit at -1 for a target of +1, in a 7-output MSE) while
    the others are fitted (0.0005); the final tanh is sampled every 25 steps, ``saturated`` of its inputs flat."""
    stream = []
    for step in range(steps):
        stuck = step % 10 == 7
        acts = ()
        if step % 25 == 0:
            acts = (ActivationStats("1", "tanh", saturated_fraction=0.0, output_std=0.6),
                    ActivationStats("3", "tanh", saturated_fraction=saturated, output_std=0.68),
                    ActivationStats("(output)", "output", output_std=0.68))
        stream.append(StepStats(step=step, loss=0.57 if stuck else 0.0005 * (1 + 0.1 * (step % 3)),
                                grad_norm=worst_grad if stuck else 0.004 * (1 + 0.1 * (step % 4)), activations=acts))
    return stream


def test_a_saturated_output_whose_worst_errors_get_no_gradient_is_a_warning():
    # The corpus' torch_so13632976 (tanh outputs, targets +-1): the stuck sample's gradient is the others' size.
    found, _ = replay(activation_health(), _tanh_output_run(worst_grad=0.005))
    loud = [f for f in found if f.severity >= Severity.WARNING]
    assert [(f.code, f.where, f.evidence["rule"]) for f in loud] == [("saturated_activation", "3",
                                                                     "error_without_gradient")]
    assert loud[0].step == 225  # 200 steps watched from the first saturated sample (step 25), then 2 samples
    assert loud[0].evidence["worst_loss_over_median"] > 100 and loud[0].evidence["worst_grad_norm_over_median"] < 2


def test_a_saturated_output_whose_worst_errors_get_their_gradient_is_a_confident_model():
    # A loss 1000x the median with a gradient 40x the median's: the error reaches the weights, the unit learns.
    found, _ = replay(activation_health(), _tanh_output_run(worst_grad=0.17))
    assert [f.severity for f in found] == [Severity.INFO]  # the saturated output, noted
    # Without a saturated output nothing is watched: the same losses say nothing about the activation.
    assert replay(activation_health(), _tanh_output_run(worst_grad=0.005, saturated=0.1))[0] == []
