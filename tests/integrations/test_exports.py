"""Exporters: TensorBoard scalars through torch's SummaryWriter, read back with TensorBoard's own loader; a plain
callable (the W&B / MLflow hook) receives every record; a broken exporter is switched off, the run goes on."""
from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch", reason="the exporters are tested on the torch guard")
from torch import nn  # noqa: E402

import trainguard  # noqa: E402
from trainguard.core.actions import Action  # noqa: E402
from trainguard.core.findings import Finding  # noqa: E402
from trainguard.core.stats import StepStats  # noqa: E402
from trainguard.core.validation import Validation  # noqa: E402
from trainguard.exports import scalars, validation_scalars  # noqa: E402
from trainguard.io.runlog import read_runlog  # noqa: E402

from _integration_runs import BATCH, data, mlp  # noqa: E402

STEPS, NAN_STEP = 6, 2
VALIDATION_STEP, VALIDATION_LOSS = 4, 0.625


def guarded_run(**guard_options) -> trainguard.Guard:
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = data()
    guard = trainguard.Guard(model, optimizer, preset="full", **guard_options)
    for step in range(STEPS):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x[step * BATCH:(step + 1) * BATCH]), y[step * BATCH:(step + 1) * BATCH])
        if step == NAN_STEP:
            loss = loss * float("nan")
        loss.backward()
        guard.step(loss, batch_size=BATCH)
        if step == VALIDATION_STEP:
            guard.record_validation(VALIDATION_LOSS, accuracy=0.75)
    guard.close()
    return guard


def test_tensorboard_scalars_are_readable_by_tensorboard(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install 'trainguard[tensorboard]')")
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    from trainguard.exports import TensorBoardExporter

    guard = guarded_run(exporters=[TensorBoardExporter(tmp_path / "tb")])
    series: dict[str, dict[int, float]] = {}
    texts: dict[str, list[int]] = {}
    for path in (tmp_path / "tb").glob("events.out.tfevents.*"):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name
                if plugin == "text":
                    texts.setdefault(value.tag.removesuffix("/text_summary"), []).append(event.step)
                else:
                    number = (value.simple_value if value.HasField("simple_value")
                              else float(tensor_util.make_ndarray(value.tensor)))
                    series.setdefault(value.tag, {})[event.step] = number
    history = list(guard.history)
    assert len(history) == STEPS
    losses = series["trainguard/loss"]
    for stats in history:
        expected = stats.loss
        if stats.step == NAN_STEP:
            assert losses[stats.step] != losses[stats.step]  # NaN
        else:
            assert losses[stats.step] == pytest.approx(expected, rel=1e-6)
    assert series["trainguard/applied"][NAN_STEP] == 0.0 and series["trainguard/applied"][0] == 1.0
    assert "trainguard/grad_norm/0.weight" in series and "trainguard/lr/0" in series
    assert texts["trainguard/findings"] == [f.step for f in guard.findings] and NAN_STEP in texts["trainguard/findings"]
    assert texts["trainguard/actions"] == [NAN_STEP]
    (validation,) = guard.session.validations
    assert series["trainguard/val/loss"] == {validation.step: VALIDATION_LOSS}
    assert series["trainguard/val/accuracy"] == {validation.step: 0.75}


def test_a_callable_receives_every_record_like_the_run_log(tmp_path):
    received = []
    guard = guarded_run(log=tmp_path / "run.jsonl", exporters=[received.append])
    log = read_runlog(tmp_path / "run.jsonl")
    assert [r.step for r in received if isinstance(r, StepStats)] == [s.step for s in log.steps]
    assert [r.code for r in received if isinstance(r, Finding)] == [f.code for f in log.findings]
    assert [(r.kind, r.step) for r in received if isinstance(r, Action)] == [("skip_step", NAN_STEP)]
    assert guard.actions == [r for r in received if isinstance(r, Action)]
    assert scalars(received[0])["loss"] == log.steps[0].loss
    assert [r for r in received if isinstance(r, Validation)] == log.validations
    (validation,) = log.validations
    assert validation_scalars(validation) == {"val/loss": VALIDATION_LOSS, "val/accuracy": 0.75,
                                              "val/train_loss": validation.train_loss}


def test_a_broken_exporter_is_switched_off_and_the_run_goes_on(tmp_path):
    calls = []

    def broken(record):
        calls.append(record)
        raise ConnectionError("tracking server down")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        guarded_run(log=tmp_path / "run.jsonl", exporters=[broken])
    assert len(calls) == 1
    assert sum("internal error in its exporter broken" in str(w.message) for w in caught) == 1
    log = read_runlog(tmp_path / "run.jsonl")
    assert len(log.steps) == STEPS and log.end["status"] == "ok"
    assert [f.where for f in log.findings if f.code == "guard_internal_error"] == ["exporter broken"]


def test_an_exporter_that_is_not_callable_is_refused():
    model = mlp()
    with pytest.raises(TypeError, match="exporter must be callable"):
        trainguard.Guard(model, torch.optim.SGD(model.parameters(), lr=0.1), exporters=["wandb"])
