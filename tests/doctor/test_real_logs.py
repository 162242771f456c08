"""The doctor and the live guard on real small training runs that write the logs people have (a torch loop's CSV,
a Hugging Face ``trainer_state.json``, a Keras ``CSVLogger``): each fault is found from the log alone, the engine
names its cause (or says ``uncertain`` where the log cannot separate the candidates), the guard's run log gets
the same causes from the doctor as from ``diagnose_runlog``, and the fixed twin gets neither a warning nor a
cause."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import trainguard
from trainguard.core.diagnosis import top_code
from trainguard.core.findings import Severity
from trainguard.diagnosis import diagnose_runlog
from trainguard.doctor import diagnose_file


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _classes(n: int = 512, d: int = 20, k: int = 10):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    return x, (x @ torch.randn(d, k, generator=g)).argmax(1)


def _mlp(d: int, hidden: int, k: int, depth: int = 2) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(d if i == 0 else hidden, hidden), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(hidden, k))


def _train(model, opt, x, y, steps: int, log: Path | None, scale_at: dict[int, float] | None = None) -> list[dict]:
    """Minibatch training; ``scale_at`` multiplies the inputs of the given steps (a corrupt batch)."""
    guard = trainguard.Guard(model, opt, policy="observe", log=str(log)) if log else None
    g = torch.Generator().manual_seed(1)
    rows = []
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(x), (32,), generator=g)
        xb = x[idx] * (scale_at or {}).get(step, 1.0)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xb), y[idx])
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf")))
        if guard is None:
            opt.step()
        else:
            guard.step(loss, inputs=xb)
        rows.append({"step": step, "loss": loss.item(), "lr": opt.param_groups[0]["lr"], "grad_norm": grad_norm})
    if guard is not None:
        guard.close()
    return rows


def _write_csv(path: Path, rows: list[dict], columns: tuple[str, ...]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows([[r[c] for c in columns] for r in rows])
    return path


def _write_trainer_state(path: Path, rows: list[dict], logging_steps: int) -> Path:
    """The shape the HF Trainer writes: every ``logging_steps`` the mean loss since the last log, the LR, the
    gradient norm of the logging step."""
    history = [{"epoch": round(rows[i + logging_steps - 1]["step"] / 100, 4),
                "grad_norm": rows[i + logging_steps - 1]["grad_norm"],
                "learning_rate": rows[i + logging_steps - 1]["lr"],
                "loss": round(float(np.mean([r["loss"] for r in rows[i:i + logging_steps]])), 4),
                "step": rows[i + logging_steps - 1]["step"]}
               for i in range(0, len(rows) - logging_steps + 1, logging_steps)]
    path.write_text(json.dumps({"global_step": rows[-1]["step"], "log_history": history}), encoding="utf-8")
    return path


def _warnings(result) -> list[str]:
    return [f.code for f in result.findings if f.severity >= Severity.WARNING]


def _same_causes(runlog: Path) -> list:
    """The doctor reading a guard's run log names exactly what ``diagnose_runlog`` names."""
    live = diagnose_runlog(runlog)
    assert [(c.code, c.confidence) for c in diagnose_file(runlog).causes] == [(c.code, c.confidence) for c in live]
    return live


def test_dead_relus_from_a_bias_init(tmp_path):
    """Biases at -10 (defects4ml-style bad init): every hidden unit dead, the loss at ln 10 from step 0."""
    x, y = _classes()
    for fixed in (False, True):
        model = _mlp(20, 64, 10, depth=3)
        if not fixed:
            for layer in model[:-1]:
                if isinstance(layer, nn.Linear):
                    nn.init.constant_(layer.bias, -10.0)
        rows = _train(model, torch.optim.SGD(model.parameters(), lr=0.05), x, y, 250, tmp_path / f"{fixed}.jsonl")
        doctor = diagnose_file(_write_csv(tmp_path / f"{fixed}.csv", rows, ("step", "loss")))
        live = _same_causes(tmp_path / f"{fixed}.jsonl")
        if fixed:
            assert _warnings(doctor) == [] and doctor.causes == [] and live == []
            continue
        assert "plateau" in _warnings(doctor)
        # The loss alone cannot tell dead units from vanishing gradients or saturation: uncertain, with them.
        assert doctor.cause == "uncertain"
        candidates = {c["code"] for c in doctor.causes[0].evidence["candidates"]}
        assert {"dead_relu", "vanishing_gradient"} <= candidates
        assert all(c.confidence < 0.6 for c in doctor.causes)
        # The guard sampled the activations: they separate the candidates.
        assert top_code(live) == "dead_relu" and live[0].confidence >= 0.6
        assert "separated_by" in live[0].evidence


def test_one_corrupt_batch_in_a_trainer_state_logged_every_10_steps(tmp_path):
    """A batch of inputs x1e4 at step 300 (a corrupt record): the logged 10-step mean jumps once and comes back."""
    x, y = _classes()
    for fixed in (False, True):
        model = _mlp(20, 64, 10)
        rows = _train(model, torch.optim.Adam(model.parameters(), lr=1e-3), x, y, 600, tmp_path / f"{fixed}.jsonl",
                      scale_at=None if fixed else {300: 1e4})
        state = tmp_path / str(fixed) / "trainer_state.json"
        state.parent.mkdir()
        doctor = diagnose_file(_write_trainer_state(state, rows, logging_steps=10))
        live = _same_causes(tmp_path / f"{fixed}.jsonl")
        if fixed:
            assert _warnings(doctor) == [] and doctor.causes == [] and live == []
            continue
        # One spike the loss recovers from is information (docs/severity.md), but the cause is still read from it.
        assert "loss_spike" in [f.code for f in doctor.findings] and _warnings(doctor) == []
        # The same cause live and from the coarse log: the gradient norm came back, so no exploding gradient.
        assert doctor.cause == top_code(live) == "bad_batch"
        assert "exploding_gradient" not in [c.code for c in live if "explained_by" not in c.evidence]


def test_an_lr_far_too_high_in_a_trainer_state_logged_every_10_steps(tmp_path):
    """Adam at lr 1.0: the loss jumps from ln 100 = 4.6 to ~50 within the first logging interval and never
    comes back; the first logged row is already the best the run ever was."""
    x, y = _classes(d=32, k=100)
    for lr in (1.0, 1e-3):
        model = nn.Sequential(nn.Linear(32, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 100))
        torch.manual_seed(0)
        rows = _train(model, torch.optim.Adam(model.parameters(), lr=lr), x, y, 500, tmp_path / f"{lr}.jsonl")
        state = tmp_path / str(lr) / "trainer_state.json"
        state.parent.mkdir()
        doctor = diagnose_file(_write_trainer_state(state, rows, logging_steps=10))
        live = diagnose_runlog(tmp_path / f"{lr}.jsonl")
        if lr == 1e-3:
            assert _warnings(doctor) == [] and doctor.causes == [] and live == []
            continue
        assert _warnings(doctor), "the doctor said healthy"
        assert doctor.cause == "lr_too_high"
        assert top_code(live) == "lr_too_high" and live[0].confidence >= 0.6
        # Adam's first update moved the weights by the learning rate itself: as far as the weights are large.
        assert live[0].evidence["adam_first_update"]["median_update_ratio"] >= 1


def test_unscaled_targets_in_a_keras_csvlogger(tmp_path):
    """Regression targets around 1000 +- 300 with Keras ``fit``: the first epoch's loss is ~1e6, orders of
    magnitude above a trivial predictor's on standardized targets."""
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x @ rng.normal(size=(8, 1)) * 300 + 1000).astype("float32")
    for fixed in (False, True):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
        targets = (y - y.mean()) / y.std() if fixed else y
        path = tmp_path / f"{fixed}.csv"
        model.fit(x, targets, epochs=20, batch_size=64, verbose=0, callbacks=[keras.callbacks.CSVLogger(str(path))])
        doctor = diagnose_file(path)
        if fixed:
            assert _warnings(doctor) == [] and doctor.causes == []
            continue
        assert "loss_scale" in _warnings(doctor)
        assert doctor.cause == "unscaled_data" and doctor.causes[0].confidence >= 0.6
        assert "exploding_gradient" not in [c.code for c in doctor.causes]
