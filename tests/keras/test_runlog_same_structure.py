"""One run log for every framework (issue 12): the same tiny run, a NaN batch included, written through the torch
guard and through the Keras callback gives logs of one structure: the same record types, the same fields in each,
the same config keys, and actions that carry their measured effect on both sides."""
from __future__ import annotations

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

import trainguard  # noqa: E402
import trainguard.keras as tk  # noqa: E402

STEPS_PER_EPOCH, EPOCHS, BATCH, NAN_STEP = 8, 2, 8, 3
COMPILED_STEP_UNMEASURED = {"grad_abs_mean", "zero_grad_fraction"}


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS_PER_EPOCH * BATCH, 4)).astype("float32")
    y = x.sum(1, keepdims=True).astype("float32")
    x[NAN_STEP * BATCH] = np.nan
    return x, y


def _torch_run(path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = (torch.from_numpy(a) for a in _data())
    with trainguard.Guard(model, optimizer, log=path) as guard:
        for epoch in range(EPOCHS):
            for start in range(0, len(x), BATCH):
                xb, yb = x[start:start + BATCH], y[start:start + BATCH]
                optimizer.zero_grad()
                loss = torch.nn.functional.mse_loss(model(xb), yb)
                loss.backward()
                guard.step(loss, batch_size=len(xb), inputs=xb, targets=yb, epoch=epoch)


def _keras_run(path) -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    x, y = _data()
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=[tk.Guard(log=path)])


def _structure(path) -> dict:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    fields: dict[str, set[str]] = {}
    for record in records:
        # Only the torch guard re-runs a NaN batch to name the first module whose output is non-finite, and counts
        # the backward passes an update applied (a hook on the autograd graph; a Keras step computes one gradient per
        # apply, and a custom loop's tape accumulation never reaches the optimizer as separate gradients).
        # The overhead budget (its events, its light steps) is the torch guard's alone (docs/runlog.md).
        if record["type"] == "event" and record["kind"].startswith("overhead_budget"):
            continue
        fields.setdefault(record["type"], set()).update(
            set(record) - {"first_nonfinite_module", "backward_passes", "light"})
    actions = [r for r in records if r["type"] == "action"]
    header = records[0]
    return {
        "types": sorted(fields),
        "fields": {kind: sorted(keys) for kind, keys in fields.items()},
        "header config": sorted(header["config"]),
        "policy": header["config"]["policy"],
        "actions": [(a["kind"], a["step"]) for a in actions],
        "effect fields": sorted({key for a in actions for key in a["effect"]}),
        "layer fields": sorted({key for r in records if r["type"] == "step" for layer in r.get("layers", ())
                                for key in layer}),
    }


def test_torch_and_keras_write_run_logs_of_one_structure(tmp_path):
    _torch_run(tmp_path / "torch.jsonl")
    _keras_run(tmp_path / "keras.jsonl")
    torch_log, keras_log = _structure(tmp_path / "torch.jsonl"), _structure(tmp_path / "keras.jsonl")
    assert torch_log["actions"] == [("skip_step", NAN_STEP), ("skip_step", STEPS_PER_EPOCH + NAN_STEP)]
    assert "loss_after" in torch_log["effect fields"] and "diagnosis" in torch_log["types"]
    if keras.backend.backend() == "jax":
        # JAX's compiled step does not hand its raw gradients to the host, and does not measure them in the graph
        # as TensorFlow's does: the per-tensor mean |g| and zero fraction are not measured there (docs/keras.md,
        # the backend table); everything else is.
        assert set(torch_log["layer fields"]) - set(keras_log["layer fields"]) == COMPILED_STEP_UNMEASURED
        keras_log["layer fields"] = torch_log["layer fields"]
    assert keras_log == torch_log


@pytest.mark.parametrize("values", [[[1.0, 2.0], [3.0, float("nan")]], [[1.0, -4.0], [float("inf"), 0.5]],
                                    [[0.5, 1.5], [2.5, 3.5]], [[1, 2], [3, 4]]], ids=["nan", "inf", "finite", "int"])
def test_data_summaries_are_taken_alike(values):
    from trainguard.adapters.keras.collect import data_summary as keras_summary
    from trainguard.adapters.torch.collect import data_summary as torch_summary

    array = np.asarray(values)
    ours = keras_summary(array if array.dtype.kind == "i" else array.astype("float32"))
    if array.dtype.kind == "i":  # class labels: no data scale on either side
        assert ours is None
        return
    theirs = torch_summary(torch.from_numpy(array.astype("float32"))).tolist()
    ours = [ours.mean, ours.std, ours.abs_max, ours.min, ours.max]
    # A NaN or Inf shows on both sides (torch's fused std_mean turns an Inf mean into NaN; numpy keeps Inf).
    assert list(np.isfinite(ours)) == list(np.isfinite(theirs))
    finite = np.isfinite(theirs)
    np.testing.assert_allclose(np.asarray(ours)[finite], np.asarray(theirs)[finite], rtol=1e-6)
