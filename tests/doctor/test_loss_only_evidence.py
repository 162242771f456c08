"""What a loss-only log can and cannot separate, on real small runs written to the logs people have.

- A loss that repeats one value to float rounding (a Keras ``CSVLogger`` of a regression whose ReLU output died
  for every input) shows that no update reached the output: dead units, not vanishing gradients, which fade
  toward the input and leave the output layer learning (0.55, the level of a logged gradient norm of exactly 0).
- A recurrent LM stuck near ln V that then goes NaN under plain SGD (bittensor#229's exploding loss): a calm that
  never converged does not shrink Adam's second moment, so the log does not point at Adam's epsilon; it is
  ``uncertain`` between an exploding gradient and Adam's epsilon (not the stall's candidates: dead, vanishing or
  saturated units do not blow up).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainguard.core.findings import Severity
from trainguard.doctor import diagnose_file

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _warnings(result) -> list[str]:
    return [f.code for f in result.findings if f.severity >= Severity.WARNING]


def _keras_regression(path: Path, relu_output: bool) -> Path:
    """Standardized linear targets, Dense(16, relu) -> Dense(1), Adam 1e-2, 20 shuffled epochs of batch 32; the
    output's bias starts at -5, which a ReLU output never comes back from (every input gives 0, no gradient)."""
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x @ rng.normal(size=(8, 1)) / np.sqrt(8)).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1, activation="relu" if relu_output else None,
                                                 bias_initializer=keras.initializers.Constant(-5.0))])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    model.fit(x, y, epochs=20, batch_size=32, verbose=0, callbacks=[keras.callbacks.CSVLogger(str(path))])
    return path


def test_a_relu_output_dead_for_every_input_is_read_from_a_frozen_csvlogger_loss(tmp_path):
    dead = diagnose_file(_keras_regression(tmp_path / "dead.csv", relu_output=True))
    assert "plateau" in _warnings(dead)
    assert dead.causes[0].evidence["stall"]["frozen"]
    assert dead.cause == "dead_relu" and dead.causes[0].confidence == 0.55
    # Vanishing gradients leave the output layer learning: not a candidate for a loss that never moved at all.
    assert "vanishing_gradient" not in [c.code for c in dead.causes]
    fixed = diagnose_file(_keras_regression(tmp_path / "fixed.csv", relu_output=False))
    assert _warnings(fixed) == [] and fixed.causes == []


def test_a_sigmoid_stack_frozen_at_the_trivial_level_after_a_first_drop_stays_uncertain(tmp_path):
    """Eight sigmoid layers (vanishing gradients) on a fixed batch of 10 balanced classes, SGD lr 1: the output
    layer learns the class priors within a few steps (2.310 -> ln 10 = 2.3026), then nothing moves and the loss
    repeats one value. Frozen after a first drop is what any stuck hidden stack gives: not dead units' evidence."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 16, generator=g)
    y = torch.arange(200) % 10
    layers: list[nn.Module] = []
    for _ in range(8):
        layers += [nn.Linear(16, 16), nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.Linear(16, 10))
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    losses = []
    for _ in range(200):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert len(set(losses[20:])) == 1 and losses[0] > losses[20]  # frozen, but after a first drop
    path = tmp_path / "sigmoid.csv"
    path.write_text("step,loss\n" + "".join(f"{i},{v!r}\n" for i, v in enumerate(losses)), encoding="utf-8")
    result = diagnose_file(path)
    assert result.cause == "uncertain"
    assert not next(c.evidence["stall"] for c in result.causes if "stall" in c.evidence)["frozen"]
    assert {"vanishing_gradient", "dead_relu"} <= {c["code"] for c in result.causes[0].evidence["candidates"]}


def _linear_rnn_lm(clip: float | None, steps: int = 120) -> list[float]:
    """bittensor#229's recurrent LM, small: a recurrence without a squashing non-linearity over BPTT windows of 30
    tokens of a sparse Markov chain (128 tokens), plain SGD at lr 6, no clipping unless ``clip``."""
    vocab, embed, hidden, window, batch = 128, 16, 32, 30, 16
    rng = np.random.default_rng(1)
    table = rng.dirichlet(np.full(vocab, 0.1), size=vocab)
    stream = [0]
    for _ in range(6000):
        stream.append(int(rng.choice(vocab, p=table[stream[-1]])))
    tokens = torch.tensor(stream)
    torch.manual_seed(0)
    emb, recur, out = nn.Embedding(vocab, embed), nn.Linear(embed + hidden, hidden), nn.Linear(hidden, vocab)
    params = [*emb.parameters(), *recur.parameters(), *out.parameters()]
    opt = torch.optim.SGD(params, lr=6.0)
    g = torch.Generator().manual_seed(2)
    losses = []
    for _ in range(steps):
        starts = torch.randint(0, len(tokens) - window - 1, (batch,), generator=g)
        windows = torch.stack([tokens[s:s + window + 1] for s in starts])
        embedded, state, states = emb(windows[:, :-1]), torch.zeros(batch, hidden), []
        for t in range(window):
            state = recur(torch.cat([embedded[:, t], state], dim=1))
            states.append(state)
        logits = out(torch.stack(states, dim=1))
        loss = nn.functional.cross_entropy(logits.reshape(-1, vocab), windows[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        losses.append(loss.item())
    return losses


def _lightning_csv(path: Path, losses: list[float]) -> Path:
    path.write_text("step,train_loss\n" + "".join(f"{i},{v!r}\n" for i, v in enumerate(losses)), encoding="utf-8")
    return path


def test_an_rnn_stuck_then_blowing_up_under_sgd_is_uncertain_not_adam_epsilon(tmp_path):
    losses = _linear_rnn_lm(clip=None)
    assert not np.isfinite(losses[-1])
    result = diagnose_file(_lightning_csv(tmp_path / "exploded.csv", losses))
    assert "non_finite" in _warnings(result)
    assert result.cause == "uncertain"
    # Dead, vanishing or saturated units, the causes of the stall before it, pass back no gradient to blow up with.
    assert {c["code"] for c in result.causes[0].evidence["candidates"]} == {"exploding_gradient", "adam_epsilon"}
    assert all(c.confidence < 0.6 for c in result.causes)
    clipped = diagnose_file(_lightning_csv(tmp_path / "clipped.csv", _linear_rnn_lm(clip=0.25)))
    assert _warnings(clipped) == [] and clipped.causes == []
