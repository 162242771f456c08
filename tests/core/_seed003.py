"""The recorded seed 003 streams (tests/core/data/, made by data/seed003_probe.py) as StepStats."""
from __future__ import annotations

import csv
import math
import pathlib

from trainguard.core.stats import LayerStats, StepStats

DATA = pathlib.Path(__file__).parent / "data"
LR = 0.01  # SGD lr of the seed 003 set-up


def seed003_stream(name: str, layer_every: int = 1) -> list[StepStats]:
    """``name`` is "exploding" (NaN at step 7) or "healthy" (1600 steps); layers on every ``layer_every``-th step."""
    with (DATA / f"seed003_{name}.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    tensors = [column.split(":")[0] for column in header[3::3]]
    stream = []
    for row in rows:
        step, loss, grad_norm = int(row[0]), float(row[1]), float(row[2])
        layers = tuple(LayerStats(name, grad_norm=_number(row[3 + 3 * i]), grad_abs_mean=_number(row[4 + 3 * i]),
                                  update_ratio=_number(row[5 + 3 * i]))
                       for i, name in enumerate(tensors))
        grads_finite = math.isfinite(grad_norm) and all(math.isfinite(layer.grad_norm) for layer in layers)
        first_bad = next((layer.name for layer in layers if not math.isfinite(layer.grad_norm)), None)
        stream.append(StepStats(step=step, loss=loss, grad_norm=grad_norm, lrs=(LR,), batch_size=32,
                                loss_finite=math.isfinite(loss), grads_finite=grads_finite,
                                first_nonfinite_grad=first_bad,
                                layers=layers if step % layer_every == 0 else ()))
    return stream


def _number(text: str) -> float | None:
    return float(text) if text else None
