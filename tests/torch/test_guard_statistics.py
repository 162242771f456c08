"""The statistics the guard measures, checked against the test's own arithmetic on real training steps."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import trainguard
from trainguard.core.presets import Preset

from _guard_runs import seed003_data, seed003_model, train

EVERY_3 = Preset("test", layer_every=3, mode_every=2, data_batches=2, fetch_every=1)


def _step(model, optimizer, guard, x, y, **kwargs):
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    guard.step(loss, batch_size=len(x), **kwargs)
    return loss


def test_every_step_fields_and_the_sampling_cadence():
    model, optimizer = seed003_model()
    x, y = seed003_data(standardized=True)
    # budget=None: the preset's own cadence, every step measured
    with trainguard.Guard(model, optimizer, policy="observe", preset=EVERY_3, budget=None) as guard:
        train(model, optimizer, x, y, epochs=1, guard=guard)
    history = list(guard.history)
    assert [s.step for s in history] == list(range(16))
    assert all(s.lrs == (0.01,) and s.batch_size in (32, 20) and s.epoch == 0 for s in history)
    assert all(bool(s.layers) == (s.step % 3 == 0) for s in history)
    assert all(bool(s.activations) == (s.step % 3 == 0) for s in history)
    assert all((s.eval_mode_modules is not None) == (s.step % 2 == 0) for s in history)
    assert all((s.inputs is not None) == (s.step < 2) for s in history)


def test_grad_norm_layer_norms_and_this_steps_update_ratio():
    model, optimizer = seed003_model()
    x, y = seed003_data()
    guard = trainguard.Guard(model, optimizer, policy="observe", preset="full")
    for step in range(3):
        before = [p.detach().clone() for p in model.parameters()]
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x[:32]), y[:32])
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        guard.step(loss, batch_size=32)
        stats = guard.history[-1]
        assert stats.loss == pytest.approx(loss.item())
        all_grads = torch.cat([g.flatten() for g in grads])
        assert stats.grad_norm == pytest.approx(torch.linalg.vector_norm(all_grads).item(), rel=1e-5)
        for layer, p, w0, g in zip(stats.layers, model.parameters(), before, grads):
            assert layer.grad_norm == pytest.approx(g.norm().item(), rel=1e-5)
            assert layer.weight_norm == pytest.approx(w0.norm().item(), rel=1e-5)
            if w0.norm() > 0:
                assert layer.update_ratio == pytest.approx(((p.detach() - w0).norm() / w0.norm()).item(), rel=1e-4)
            assert layer.grad_abs_mean == pytest.approx(g.abs().mean().item(), rel=1e-5)
            assert layer.zero_grad_fraction == pytest.approx((g == 0).float().mean().item())
            assert layer.adam_update_rms is None
    guard.close()


def test_adam_update_rms_and_second_moment_spread():
    model, _ = seed003_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-8)
    x, y = seed003_data(standardized=True)
    guard = trainguard.Guard(model, optimizer, policy="observe", preset="full")
    _step(model, optimizer, guard, x[:32], y[:32])
    # after one step v_hat = g^2, so every update entry is g/|g| = +-1: the RMS is 1 (zero gradients aside)
    for layer, p in zip(guard.history[0].layers, model.parameters()):
        nonzero = (p.grad != 0).float().mean().item()
        assert layer.adam_update_rms == pytest.approx(math.sqrt(nonzero), rel=1e-3)
        assert layer.adam_sqrt_v_min == pytest.approx(p.grad.abs().min().item(), rel=1e-4)
    for _ in range(3):
        _step(model, optimizer, guard, x[32:64], y[32:64])
    stats = guard.history[-1]
    for layer, p in zip(stats.layers, model.parameters()):
        state = optimizer.state[p]
        v_hat = state["exp_avg_sq"] / (1 - 0.999 ** state["step"])
        expected = (p.grad ** 2 / v_hat.clamp_min(1e-16)).mean().sqrt().item()
        assert layer.adam_update_rms == pytest.approx(expected, rel=1e-4)
        assert layer.adam_sqrt_v_median == pytest.approx(v_hat.sqrt().median().item(), rel=1e-4)
    guard.close()


def test_eval_mode_left_on_is_reported_by_name():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = seed003_data(standardized=True)
    guard = trainguard.Guard(model, optimizer, policy="observe", preset=EVERY_3)
    model.train()
    _step(model, optimizer, guard, x[:32], y[:32])
    model.eval()  # the seed 000 bug: evaluation mode left on while training goes on
    _step(model, optimizer, guard, x[:32], y[:32])
    _step(model, optimizer, guard, x[:32], y[:32])
    guard.close()
    assert [s.eval_mode_modules for s in guard.history] == [(), None, ("1", "3")]


def test_data_scale_of_the_first_batches():
    model, optimizer = seed003_model()
    x, y = seed003_data()
    guard = trainguard.Guard(model, optimizer, policy="observe", preset=EVERY_3)
    for start in (0, 32, 64):
        _step(model, optimizer, guard, x[start:start + 32], y[start:start + 32], inputs=x[start:start + 32],
              targets=y[start:start + 32])
    guard.close()
    for stats, start in zip(guard.history, (0, 32)):
        for summary, data in ((stats.inputs, x[start:start + 32]), (stats.targets, y[start:start + 32])):
            assert summary.mean == pytest.approx(data.mean().item(), rel=1e-4, abs=1e-5)
            assert summary.std == pytest.approx(data.std(correction=0).item(), rel=1e-4)
            assert summary.abs_max == pytest.approx(data.abs().max().item())
    assert guard.history[0].targets.std > 100  # seed 003's targets are on a scale of hundreds
    assert guard.history[2].inputs is None and guard.history[2].targets is None


def test_integer_targets_are_not_summarised():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    guard = trainguard.Guard(model, optimizer, policy="observe")
    x, labels = torch.randn(8, 4), torch.randint(0, 3, (8,))
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(model(x), labels)
    loss.backward()
    guard.step(loss, inputs=x, targets=labels)
    guard.close()
    assert guard.history[0].inputs is not None and guard.history[0].targets is None


def test_activation_health_dead_relu_and_saturated_sigmoid_tanh():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 8), nn.ReLU(), nn.Linear(8, 8), nn.Sigmoid(), nn.Linear(8, 8), nn.Tanh(),
                          nn.Linear(8, 1))
    with torch.no_grad():
        model[0].bias[:6] = -100.0  # six of eight ReLU units can never fire
        model[2].weight.mul_(1000.0)  # sigmoid inputs far beyond +-5
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    x, y = seed003_data(standardized=True)
    guard = trainguard.Guard(model, optimizer, policy="observe", preset=EVERY_3)
    for _ in range(4):
        _step(model, optimizer, guard, x[:32], y[:32])
    guard.close()
    acts = {a.name: a for a in guard.history[0].activations}
    assert list(acts) == ["1", "3", "5", "(output)"]
    assert acts["1"].kind == "relu" and acts["1"].dead_fraction >= 0.75
    # the test's own arithmetic on the weights of step 0 (lr 1e-4 moved them little by step 3)
    with torch.no_grad():
        relu_out = model[1](model[0](x[:32]))
        sigmoid_in = model[2](relu_out)
        tanh_in = model[4](model[3](sigmoid_in))
    assert acts["1"].dead_fraction == pytest.approx(1 - (relu_out > 0).any(dim=0).float().mean().item())
    assert acts["3"].kind == "sigmoid" and acts["3"].saturated_fraction > 0.5
    assert acts["3"].saturated_fraction == pytest.approx((sigmoid_in.abs() > 5).float().mean().item(), abs=0.05)
    assert acts["5"].kind == "tanh"
    assert acts["5"].saturated_fraction == pytest.approx((tanh_in.abs() > 2.5).float().mean().item(), abs=0.05)
    assert acts["(output)"].output_std > 0
    assert guard.history[3].activations and not guard.history[1].activations
    # the hooks exist only around a sampled forward
    assert not any(m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("module", [nn.ReLU(), nn.ReLU6()])
def test_dead_fraction_is_the_definition_with_nan_inf_and_tiny_values(module):
    """Dead = <= 0 for every sample of the batch, whatever else a unit's column holds (a NaN beside a positive
    value, an Inf, denormals), on a conv output and a dense one."""
    from trainguard.adapters.torch.hooks import _health
    torch.manual_seed(0)
    for shape in [(16, 4, 3, 3), (32, 24), (7,)]:
        for trial in range(12):
            x = torch.randn(*shape) - trial / 4  # more and more dead units
            odd = torch.rand(shape) < 0.1
            x[odd] = (float("nan"), float("inf"), -float("inf"), 1e-42)[trial % 4]
            out = module(x)
            units = out.reshape(out.shape[0], -1) if out.dim() > 1 else out.reshape(1, -1)
            expected = 1 - (units > 0).any(dim=0).float().mean()
            assert _health("relu", (x,), out)[0].item() == expected.item()


def test_hooks_ignore_evaluation_passes_between_steps():
    model, optimizer = seed003_model()
    x, y = seed003_data(standardized=True)
    guard = trainguard.Guard(model, optimizer, policy="observe", preset=EVERY_3)
    with torch.no_grad():
        model(torch.full((4, 20), -1e3))  # a validation pass before the sampled training forward
    _step(model, optimizer, guard, x[:32], y[:32])
    guard.close()
    relu = guard.history[0].activations[0]
    assert relu.dead_fraction < 0.5  # measured on the training batch, not on the all-negative pass


class TwoInputs(nn.Module):
    """A model called as model(a, b=...), with a branch that gets no gradient."""

    def __init__(self):
        super().__init__()
        self.left, self.right, self.unused = nn.Linear(4, 2), nn.Linear(4, 2), nn.Linear(4, 2)

    def forward(self, a, b):
        return self.left(a) + self.right(b)


def test_parameters_without_gradients_are_left_out_and_inputs_may_be_a_dict():
    torch.manual_seed(0)
    model = TwoInputs()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    guard = trainguard.Guard(model, optimizer, policy="observe", preset="full")
    a, b = torch.randn(8, 4), torch.randn(8, 4)
    optimizer.zero_grad()
    loss = model(a, b).pow(2).mean()
    loss.backward()
    guard.step(loss, inputs={"a": a, "b": b})
    assert [layer.name for layer in guard.history[0].layers] == ["left.weight", "left.bias", "right.weight",
                                                                 "right.bias"]
    assert guard.locate_non_finite({"a": a, "b": b.masked_fill(b > 0, float("inf"))}) == "(inputs)"
    b_bad = b.clone()
    with torch.no_grad():
        model.right.weight[0, 0] = float("nan")
    assert guard.locate_non_finite((a, b_bad)) == "right"
    guard.close()


def test_a_python_float_or_per_sample_loss_is_accepted():
    model, optimizer = seed003_model()
    x, y = seed003_data(standardized=True)
    guard = trainguard.Guard(model, optimizer, policy="observe")
    optimizer.zero_grad()
    per_sample = nn.functional.mse_loss(model(x[:8]), y[:8], reduction="none")
    per_sample.mean().backward()
    guard.step(per_sample)
    guard.step(3.5)
    guard.close()
    assert guard.history[0].loss == pytest.approx(per_sample.mean().item())
    assert guard.history[1].loss == 3.5
    assert not [f for f in guard.findings if f.code == "guard_internal_error"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's own, on importing torch._dynamo
def test_a_compiled_model_keeps_its_names_and_gets_no_activation_hooks():
    model, optimizer = seed003_model()
    compiled = torch.compile(model)
    guard = trainguard.Guard(compiled, optimizer, policy="observe")
    assert guard.names == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert not any(m._forward_hooks for m in model.modules())
    guard.close()


def test_a_frozen_feature_extractor_kept_in_eval_mode_is_not_reported_until_unfrozen():
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Linear(20, 16), nn.BatchNorm1d(16), nn.ReLU())
    model = nn.Sequential(backbone, nn.Linear(16, 1))
    for p in backbone.parameters():
        p.requires_grad = False
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = seed003_data(standardized=True)
    guard = trainguard.Guard(model, optimizer, policy="safe", preset=EVERY_3)
    model.train()
    backbone.eval()  # on purpose: the frozen BatchNorm keeps its pretrained statistics
    _step(model, optimizer, guard, x[:32], y[:32])
    for p in backbone.parameters():  # unfrozen, but its BatchNorm left in eval mode: now gradients pass
        p.requires_grad = True
    _step(model, optimizer, guard, x[:32], y[:32])
    _step(model, optimizer, guard, x[:32], y[:32])
    guard.close()
    assert [s.eval_mode_modules for s in guard.history] == [(), None, ("0.1",)]
