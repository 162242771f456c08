"""The look-alikes of issue 11 section 4 told apart by measured evidence: Adam's first update (the learning
rate against the weights, whatever the data or the gradient), the first loss before any update (what no
learning rate causes), on streams and on small real PyTorch runs."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest

from _diag_streams import healthy, with_data
from trainguard.core.diagnosis import diagnose
from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import TensorSummary


def codes(causes):
    return [c.code for c in causes]


def _adam(stats, first_ratio, later_ratio=1e-3):
    """Adam's statistics: an update RMS per tensor; the first update ``first_ratio`` of every weight tensor."""
    out = []
    for s in stats:
        ratio = first_ratio if s.step == 0 else later_ratio
        out.append(replace(s, layers=tuple(replace(l, adam_update_rms=0.3, update_ratio=ratio * math.exp(0.1 * i))
                                           for i, l in enumerate(s.layers))))
    return out


def _rise_after_first(stats, factor):
    return [replace(s, loss=s.loss * factor) if 1 <= s.step <= 40 else s for s in stats]


def test_adams_first_update_as_large_as_the_weights_is_the_learning_rate():
    # lr 1.0 with Adam (rajveermalviya/language-modeling#3): the first step moves every weight by the LR itself.
    causes = diagnose(_rise_after_first(_adam(healthy(), first_ratio=10.0), 2.0), [])
    assert codes(causes)[0] == "lr_too_high" and causes[0].confidence >= 0.6
    assert causes[0].evidence["adam_first_update"]["median_update_ratio"] >= 10
    assert causes[0].evidence["loss_rose_after_first_update"] is True


def test_an_ordinary_adam_first_update_says_nothing():
    # 0.1: the healthy corpus' largest (lr 2e-3 on GPT-2's initialization).
    assert diagnose(_rise_after_first(_adam(healthy(), first_ratio=0.1), 2.0), []) == []


def test_a_large_first_update_without_adam_is_not_read_as_the_learning_rate():
    # SGD's first update is lr * g: a huge gradient makes it large at any learning rate.
    stats = [replace(s, layers=tuple(replace(l, update_ratio=10.0) for l in s.layers)) if s.step == 0 else s
             for s in _rise_after_first(healthy(), 2.0)]
    causes = diagnose(stats, [])
    assert "lr_too_high" not in codes(causes) or causes[0].confidence < 0.6


def test_adams_first_step_does_not_make_the_typical_update_large():
    # JoeyNMT#81's GRU: Adam's first update is 0.024 of the weights, the later ones under 0.01; one gradient warning.
    stats = _adam(healthy(), first_ratio=0.024, later_ratio=0.007)
    found = [Finding("exploding_gradient", Severity.WARNING, 200, None, {}, "gradient norm grew 10x")]
    assert "lr_too_high" not in codes(diagnose(stats, found))
    # The same run whose later updates are large in every layer is the learning rate's.
    large = _adam(healthy(), first_ratio=0.024, later_ratio=0.03)
    assert "lr_too_high" in codes(diagnose(large, found))


def _blown_at_init(first_loss, data=TensorSummary(mean=0.0, std=1.0, abs_max=3.0)):
    """TF#45146's SimpleRNN (gain 1.3): the first loss far above the trivial level, non-finite at step 1."""
    stats = with_data(healthy(40), inputs=data, targets=TensorSummary(mean=0.0, std=0.9, abs_max=2.5))
    first = replace(stats[0], loss=first_loss, grad_norm=3e4,
                    layers=tuple(replace(l, update_ratio=30.0, grad_norm=1e3) for l in stats[0].layers))
    rest = [replace(s, loss=math.nan, grad_norm=math.nan, loss_finite=False, grads_finite=False, layers=(),
                    activations=()) for s in stats[1:3]]
    return [first, *rest]


def test_a_first_loss_far_above_trivial_on_unit_data_is_an_explosion_not_the_learning_rate():
    causes = diagnose(_blown_at_init(235.0), [Finding("non_finite", Severity.ERROR, 1, "rnn.kernel", {}, "nan")])
    assert codes(causes)[0] == "exploding_gradient" and causes[0].confidence >= 0.6
    assert causes[0].evidence["first_over_trivial"] == pytest.approx(235.0)


def test_the_same_blow_up_from_an_ordinary_first_loss_is_not_read_at_initialization():
    causes = diagnose(_blown_at_init(1.2), [Finding("non_finite", Severity.ERROR, 1, "rnn.kernel", {}, "nan")])
    assert not (codes(causes)[:1] == ["exploding_gradient"] and causes[0].confidence >= 0.6)


def test_a_first_loss_far_above_trivial_on_large_inputs_is_the_data():
    large = TensorSummary(mean=20.0, std=30.0, abs_max=200.0)
    causes = diagnose(_blown_at_init(235.0, data=large), [Finding("non_finite", Severity.ERROR, 1, None, {}, "nan")])
    assert codes(causes)[0] == "unscaled_data"


def _write_csv(path, losses):
    path.write_text("epoch,loss\n" + "".join(f"{i},{loss!r}\n" for i, loss in enumerate(losses)), encoding="utf-8")
    return path


def test_a_slow_linear_decline_in_a_log_is_lr_too_low(tmp_path):
    from trainguard.doctor import diagnose_file

    # Keras fit at SGD(1e-5): 2.033 -> 1.974 over 10 epochs, the same fall every epoch (CS231n: linear).
    linear = [2.033 - 0.0066 * i + 0.0005 * (-1) ** i for i in range(10)]
    result = diagnose_file(_write_csv(tmp_path / "linear.csv", linear))
    assert result.cause == "lr_too_low" and result.causes[0].evidence["linear_decline"]["falling_blocks"] >= 0.9
    # A healthy run converging: the second half falls far less than the first.
    converging = [0.3 + 1.7 * math.exp(-i / 2) for i in range(10)]
    assert diagnose_file(_write_csv(tmp_path / "converging.csv", converging)).cause != "lr_too_low"
    # A noisy loss whose trend does not stand out of its noise is not read as a steady decline.
    noisy = [2.0 - 0.005 * i + 0.1 * (-1) ** i for i in range(40)]
    assert diagnose_file(_write_csv(tmp_path / "noisy.csv", noisy)).cause != "lr_too_low"


# -- small real runs ---------------------------------------------------------------------------------------------
torch = pytest.importorskip("torch")


def _adam_classifier(lr: float, steps: int = 120):
    from torch import nn

    import trainguard

    torch.manual_seed(0)
    x = torch.randn(512, 16)
    y = (x[:, :4].sum(dim=1) > 0).long() + (x[:, 4] > 1).long()
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    guard = trainguard.Guard(model, optimizer, policy="observe")
    generator = torch.Generator().manual_seed(0)
    for step in range(steps):
        idx = torch.randint(0, 512, (32,), generator=generator)
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        guard.step(loss, inputs=x[idx], targets=y[idx])
    guard.close()
    return guard.diagnose()


def test_adam_at_lr_1_is_diagnosed_lr_too_high_and_at_1e_3_not():
    high = _adam_classifier(1.0)
    assert codes(high)[0] == "lr_too_high" and high[0].confidence >= 0.6
    assert high[0].evidence["adam_first_update"]["median_update_ratio"] >= 1
    assert "lr_too_high" not in codes(_adam_classifier(1e-3))


def test_an_exploding_gradient_in_a_run_that_clips_is_not_told_to_clip():
    from _diag_streams import explode

    stats = explode(with_data(healthy(60)), start=30, nan_at=36)
    found = [Finding("exploding_gradient", Severity.ERROR, 32, "fc1.weight", {}, "grew"),
             Finding("non_finite", Severity.ERROR, 36, "fc1.weight", {}, "nan")]
    plain = diagnose(stats, found)
    assert codes(plain)[0] == "exploding_gradient" and "clip_grad_norm_" in str(plain[0].fix)
    clipped = diagnose([replace(s, clip_max_norm=1.0) for s in stats], found)
    assert codes(clipped)[0] == "exploding_gradient" and clipped[0].evidence["clipped_by_the_run_at"] == 1.0
    for framework in ("torch", "keras"):
        text = clipped[0].fix.text(framework)
        assert "clip_grad_norm_" not in text and "clipnorm" not in text and "already clips" in text


def test_a_zero_initialized_tensor_does_not_hide_a_learning_rate_too_low():
    from trainguard.core.stats import LayerStats

    # LOMO#50's transformer at SGD 5e-5: every weight moves ~1e-6 of its norm per step, while the positional
    # embedding initialized at zero grows from nothing (its ratio ~0.1 says nothing about the step size).
    stalled = [replace(s, loss=4.09 * math.exp(0.005 * math.sin(s.step)),
                       layers=tuple(replace(l, update_ratio=1e-6) for l in s.layers)) for s in healthy()]
    with_pos = [replace(s, layers=(LayerStats("pos", grad_norm=0.03, weight_norm=0.0 if s.step == 0 else 1e-5,
                                              update_ratio=None if s.step == 0 else 0.1),) + s.layers)
                if s.layers else s for s in stalled]
    causes = diagnose(with_pos, [])
    assert codes(causes)[0] == "lr_too_low" and causes[0].confidence >= 0.6


def _nan_from(stats, step, run_up=1.0):
    """Non-finite from ``step`` on (the NaN update reached the weights); ``run_up``: the loss and gradient norm
    of the 3 steps before grow by this factor per step."""
    out = []
    for s in stats:
        if s.step >= step:
            out.append(replace(s, loss=math.nan, grad_norm=math.nan, loss_finite=False, grads_finite=False,
                               layers=(), activations=()))
        elif s.step >= step - 3:
            k = run_up ** (s.step - step + 4)
            out.append(replace(s, loss=s.loss * k, grad_norm=s.grad_norm * k))
        else:
            out.append(s)
    return out


def test_a_nan_loss_from_an_ordinary_step_is_the_batch():
    # Open-Assistant PR 2438: an empty answer's masked mean is 0/0 at step 1; every later loss is NaN.
    found = [Finding("non_finite", Severity.ERROR, 1, "embed.weight", {}, "non-finite loss")]
    causes = diagnose(_nan_from(healthy(), 1), found)
    assert codes(causes)[0] == "bad_batch" and causes[0].evidence["no_run_up"] is True
    assert causes[0].evidence["first_non_finite"] == "embed.weight"
    # Later in the run, with no growth before it, the same.
    assert codes(diagnose(_nan_from(healthy(), 150), []))[0] == "bad_batch"


def test_a_nan_after_the_loss_and_gradient_grew_is_not_the_batch():
    causes = diagnose(_nan_from(healthy(), 150, run_up=5.0), [])
    assert "bad_batch" not in codes(causes)


def _spiked_once_per_epoch(places):
    """Six 50-step epochs; a 1.8x loss spike at ``places[e]`` of epoch e, as the live detector reports it."""
    spikes = {50 * e + p for e, p in enumerate(places)}
    stats = [replace(s, loss=s.loss * 1.8) if s.step in spikes else s for s in healthy(300, steps_per_epoch=50)]
    found = [Finding("loss_spike", Severity.INFO, step, None, {}, "isolated loss spike") for step in sorted(spikes)]
    return stats, found


def test_one_spike_in_each_epoch_at_a_different_place_is_one_bad_sample():
    # Cross Validated 413205: one window left unstandardized, drawn once per epoch by a shuffled loader.
    causes = diagnose(*_spiked_once_per_epoch([13, 41, 7, 29, 35, 22]))
    assert codes(causes)[0] == "bad_batch" and causes[0].evidence["epochs"] == 6
    # At the same place every epoch (the last batch) it is the epoch's structure, not a sample.
    assert "bad_batch" not in codes(diagnose(*_spiked_once_per_epoch([49] * 6)))
    # In two epochs of six: the isolated spikes a healthy run has.
    stats, found = _spiked_once_per_epoch([13, 41])
    assert "bad_batch" not in codes(diagnose(stats, found))


def _write_state(path, losses, lrs):
    import json

    history = [{"step": 10 * (i + 1), "loss": loss, "learning_rate": lr, "grad_norm": 1.0}
               for i, (loss, lr) in enumerate(zip(losses, lrs))]
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"global_step": 10 * len(losses), "log_history": history}), encoding="utf-8")
    return path


def test_a_loss_that_improves_only_as_the_lr_decays_is_lr_too_high(tmp_path):
    from trainguard.doctor import diagnose_file

    # The HF Trainer at lr 2 with linear decay (a GPT-2 from a config): 364 -> 12, most of it late.
    lrs = [2.0 * (1 - i / 30) for i in range(30)]
    late = [math.exp(math.log(360) - 3.4 * (i / 29) ** 2) * (1 + 0.05 * (-1) ** i) for i in range(30)]
    result = diagnose_file(_write_state(tmp_path / "late" / "trainer_state.json", late, lrs))
    assert result.cause == "lr_too_high" and result.causes[0].evidence["progress_as_lr_decays"]["lr_fall"] >= 2
    # A decaying schedule under which the loss falls early, as it should: no cause.
    early = [0.5 + 3.0 * math.exp(-i / 4) * (1 + 0.02 * (-1) ** i) for i in range(30)]
    assert diagnose_file(_write_state(tmp_path / "early" / "trainer_state.json", early, lrs)).cause == "none"


def test_a_huge_first_adam_update_from_an_underflowed_second_moment_is_not_the_learning_rate():
    # keras#11860: float16 Adam at lr 1e-3; v underflows, so m / (sqrt(v) + eps) is ~1e4, not +-1.
    stats = [replace(s, layers=tuple(replace(l, adam_update_rms=1.4e4) for l in s.layers)) if s.step == 0 else s
             for s in _rise_after_first(_adam(healthy(), first_ratio=9.3), 2.0)]
    causes = diagnose(stats, [])
    assert not (codes(causes)[:1] == ["lr_too_high"] and causes[0].confidence >= 0.6)
