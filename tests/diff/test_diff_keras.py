"""Acceptance, seed 000 in Keras (torch backend): ``model.fit`` against a custom loop that calls ``model(x)``
without ``training=True``, a model with BatchNormalization, same seed and data order, guard in observe mode
with the forensic preset. Both models are built in one process, as in a notebook (Keras numbers the second
one's layers ``dense_2``...)."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")
if keras.backend.backend() != "torch":
    pytest.skip("the custom loop below is written for Keras' torch backend", allow_module_level=True)

import trainguard  # noqa: E402
from trainguard.adapters.keras import Guard, GuardedOptimizer  # noqa: E402
from trainguard.cli import main  # noqa: E402

EPOCHS, BATCH = 3, 32
_rng = np.random.default_rng(0)
X = _rng.normal(size=(256, 12)).astype("float32")
Y = np.eye(3, dtype="float32")[X[:, :3].argmax(1)]


def _model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((12,)), keras.layers.Dense(24), keras.layers.BatchNormalization(),
                             keras.layers.ReLU(), keras.layers.Dense(3, activation="softmax")])


def _fit(path):
    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="categorical_crossentropy")
    model.fit(X, Y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
              callbacks=[Guard(policy="observe", log=str(path), preset="forensic")])
    return path


def _custom_loop(path, training):
    """The seed's hand-written step: forward, loss, gradients, optimizer update, batch by batch in order."""
    model = _model()
    loss_fn = keras.losses.CategoricalCrossentropy()
    optimizer = GuardedOptimizer(keras.optimizers.SGD(0.05, momentum=0.9), policy="observe", log=str(path),
                                 preset="forensic", model=model)
    for _ in range(EPOCHS):
        for start in range(0, len(X), BATCH):
            x, y = torch.from_numpy(X[start:start + BATCH]), torch.from_numpy(Y[start:start + BATCH])
            model.zero_grad()
            predictions = model(x, training=True) if training else model(x)  # the bug: no training=True
            loss = loss_fn(y, predictions)
            loss.backward()
            grads = [v.value.grad for v in model.trainable_weights]
            with torch.no_grad():
                optimizer.apply(grads, model.trainable_weights, loss=loss, batch_size=len(x))
    optimizer.close()
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("keras_runs")
    return {"fit": _fit(root / "fit.jsonl"), "loop": _custom_loop(root / "loop.jsonl", training=False),
            "loop_training": _custom_loop(root / "loop_training.jsonl", training=True)}


def test_custom_loop_without_training_true_is_bn_inference_mode(runs, capsys):
    result = trainguard.diff(runs["fit"], runs["loop"])
    assert result.verdict == "part"
    assert result.first_divergence.step == 0
    assert result.first_divergence.category in ("mode", "bn_stats")
    assert "batch_normalization" in result.first_divergence.where
    assert result.cause.code == "bn_inference_mode" and result.cause.evidence["run"] == "B"
    assert main(["diff", str(runs["fit"]), str(runs["loop"])]) == 1
    assert "bn_inference_mode" in capsys.readouterr().out


def test_the_same_loop_with_training_true_agrees_with_fit(runs, capsys):
    result = trainguard.diff(runs["fit"], runs["loop_training"])
    assert result.verdict == "agree", result.cause.message
    assert result.layer_steps == len(result.compared_steps) == EPOCHS * len(X) // BATCH
    assert main(["diff", str(runs["fit"]), str(runs["loop_training"])]) == 0
    capsys.readouterr()


def test_fit_runs_with_different_shuffling_part_on_the_data_not_the_model(tmp_path):
    def fit(path, seed):
        model = _model()
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="categorical_crossentropy")
        order = np.random.default_rng(seed).permutation(len(X))
        model.fit(X[order], Y[order], batch_size=BATCH, epochs=1, shuffle=False, verbose=0,
                  callbacks=[Guard(policy="observe", log=str(path), preset="forensic")])
        return path

    same = trainguard.diff(fit(tmp_path / "a.jsonl", 1), fit(tmp_path / "b.jsonl", 1))
    assert same.verdict == "agree"
    shuffled = trainguard.diff(tmp_path / "a.jsonl", fit(tmp_path / "c.jsonl", 2))
    assert shuffled.verdict == "part"
    assert shuffled.first_divergence.step == 0
    assert shuffled.cause.code == "data_order"


def test_forensic_runs_record_batchnorm_moving_statistics_which_stand_still_in_inference_mode(runs):
    from trainguard.io.runlog import read_runlog

    def moving_mean(path):
        return [next(b.mean for b in s.buffers if b.name.endswith("moving_mean")) for s in read_runlog(path).steps[:5]]

    fit, loop = moving_mean(runs["fit"]), moving_mean(runs["loop"])
    assert len(set(fit)) == len(fit)  # training mode: the statistics move every step
    assert len(set(loop)) == 1  # model(x) without training=True: they never move
