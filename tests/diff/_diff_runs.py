"""Run logs for the diff tests: synthetic ones (written with RunLogWriter, a known truth) and real torch runs."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

from trainguard.core.stats import BufferStats, LayerStats, StepStats
from trainguard.io.runlog import RunLogWriter

PARAMETERS = ("fc1.weight", "fc1.bias", "bn.weight", "bn.bias", "fc2.weight", "fc2.bias")
BN_BUFFERS = ("bn.running_mean", "bn.running_var", "bn.num_batches_tracked")

Edit = Callable[[StepStats], StepStats]


def healthy_step(t: int) -> StepStats:
    """A plausible forensic record of step ``t`` of a small BN network: every value depends on the step."""
    layers = tuple(
        LayerStats(name, grad_norm=0.5 / (i + 1) + 0.01 * t, weight_norm=1.0 + i + 0.002 * t,
                   update_ratio=1e-3 * (1 + 0.1 * i), grad_abs_mean=0.01 / (i + 1))
        for i, name in enumerate(PARAMETERS))
    buffers = (BufferStats("bn.running_mean", 0.01 * (t + 1), 0.1 * (t + 1)),
               BufferStats("bn.running_var", 1.0 - 0.01 * (t + 1), 4.0 - 0.04 * (t + 1)),
               BufferStats("bn.num_batches_tracked", t + 1.0, t + 1.0))
    return StepStats(step=t, loss=2.0 / (1 + 0.05 * t), batch_size=32, lrs=(0.1,), grad_norm=1.0 + 0.01 * t,
                     layers=layers, buffers=buffers, eval_mode_modules=(), batch_fingerprint=f"batch{t:04d}")


def write_run(path: Path, steps: int = 12, edit: Edit | None = None, parameters=PARAMETERS,
              close: bool = True) -> Path:
    writer = RunLogWriter(path, framework="synthetic", config={"policy": "observe", "preset": "forensic"},
                          parameters=parameters)
    for t in range(steps):
        stats = healthy_step(t)
        writer.step(edit(stats) if edit else stats)
    if close:
        writer.close()
    else:
        writer._file.close()  # a run that died: no end record
    return path


def scaled_layers(stats: StepStats, factor: float, fields=("grad_norm", "grad_abs_mean")) -> StepStats:
    layers = tuple(replace(layer, **{f: getattr(layer, f) * factor for f in fields}) for layer in stats.layers)
    return replace(stats, layers=layers)
