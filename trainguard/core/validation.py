"""A validation result: the loss (and metrics) of the model on held-out data, at one point of the training.

The one record every adapter writes, whatever evaluated the model: the torch guard's ``record_validation``, the
Keras callback (``val_*`` of each epoch's logs), the HF Trainer's ``on_evaluate`` and Lightning's validation end.
The session fills ``train_loss`` (the training loss's level when the model was evaluated) from its history, and
writes the record to the run log (``{"type": "validation", ...}``); the overfitting detector reads it.

>>> validation_record(120, 0.52, {"accuracy": 0.91}).to_dict()
{'step': 120, 'loss': 0.52, 'metrics': {'accuracy': 0.91}}
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Sequence

__all__ = ["Validation", "validation_record", "held_out_results", "training_level", "LEVEL_STEPS"]

LEVEL_STEPS = 20  # the training steps whose median loss is the training level at an evaluation


@dataclass(frozen=True, slots=True)
class Validation:
    """``step``: the optimizer steps taken when the model was evaluated (HF's and Lightning's ``global_step``).
    ``loss``: the held-out loss (None when only metrics were given). ``metrics``: held-out metrics by name, without
    a ``val_``/``eval_`` prefix (``{"accuracy": 0.91}``). ``train_loss``: the training loss's level then (the
    median of the last steps' losses), filled by the session. ``epoch``: the epoch, when the framework says it."""

    step: int
    loss: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    train_loss: float | None = None
    epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A plain dict; None and empty fields are left out (the run-log writer encodes NaN/Inf)."""
        out: dict[str, Any] = {"step": self.step}
        for key in ("loss", "metrics", "train_loss", "epoch"):
            value = getattr(self, key)
            if value is not None and value != {}:
                out[key] = dict(value) if key == "metrics" else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Validation:
        """Inverse of :meth:`to_dict`; a field of the wrong type raises TypeError/ValueError (the run-log reader
        skips that record and says so)."""
        metrics = data.get("metrics") or {}
        if not isinstance(metrics, dict):
            raise TypeError("metrics is not a mapping")
        epoch = data.get("epoch")
        return cls(step=_whole(data["step"], "step"), loss=_number(data.get("loss"), "loss"),
                   metrics={str(k): _number(v, str(k)) for k, v in metrics.items()},
                   train_loss=_number(data.get("train_loss"), "train_loss"),
                   epoch=None if epoch is None else _whole(epoch, "epoch"))


def validation_record(step: int, loss: Any = None, metrics: dict[str, Any] | None = None, *,
                      epoch: int | None = None) -> Validation:
    """A :class:`Validation` from what a user passed: numbers, numpy scalars or one-element tensors (anything
    ``float()`` takes). Anything else is the user's error: a ``TypeError`` in one line."""
    metrics = metrics or {}
    if loss is None and not metrics:
        raise TypeError("a validation result needs a loss or at least one metric, e.g. "
                        "guard.record_validation(val_loss, accuracy=val_acc)")
    return Validation(step=int(step), loss=None if loss is None else _user_number(loss, "the validation loss"),
                      metrics={str(k): _user_number(v, f"metric {k!r}") for k, v in metrics.items()},
                      epoch=epoch)


def held_out_results(logs: dict[str, Any], prefixes: tuple[str, ...], loss_names: tuple[str, ...] = ("loss",),
                     skip_suffixes: tuple[str, ...] = ()) -> tuple[float | None, dict[str, float]]:
    """A framework's evaluation logs as ``(loss, metrics)``: the entries named with one of ``prefixes`` (Keras'
    ``val_``, the Trainer's ``eval_``), the prefix dropped, those ending in ``skip_suffixes`` left out, numbers
    only; the first of ``loss_names`` present is the loss, the rest the metrics."""
    values = {}
    for name, value in logs.items():
        prefix = next((p for p in prefixes if name.startswith(p)), None)
        if prefix is not None and not name.endswith(skip_suffixes):
            values[name[len(prefix):]] = value
    values = _numbers(values)
    loss = next((values.pop(k) for k in loss_names if k in values), None)
    return loss, values


def _numbers(values: dict[str, Any]) -> dict[str, float]:
    """The values of a framework's metric dict that are numbers (a framework's logs may also hold strings or
    arrays, which are not a metric to judge)."""
    out = {}
    for name, value in values.items():
        if isinstance(value, (bool, str, bytes)):
            continue
        try:
            out[str(name)] = float(value)
        except (TypeError, ValueError, RuntimeError):  # a tensor of several elements: not one metric
            continue
    return out


def training_level(history: Sequence[Any], steps: int = LEVEL_STEPS) -> float | None:
    """The median finite loss of the last ``steps`` recorded steps (``StepStats``), None when there is none: the
    training loss at an evaluation, robust to the one odd batch."""
    losses = []
    for i in range(1, min(steps, len(history)) + 1):
        loss = history[-i].loss
        if loss is not None and math.isfinite(loss):
            losses.append(loss)
    return statistics.median(losses) if losses else None


def _user_number(value: Any, what: str) -> float:
    if isinstance(value, (bool, str, bytes)):
        raise TypeError(f"{what} must be a number, got {type(value).__name__}")
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{what} must be a number or a one-element tensor, got {type(value).__name__}") from None


def _number(value: Any, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"{key} is not a number")
    return float(value)  # "nan" / "inf" as the writer encoded them


def _whole(value: Any, key: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{key} is not a whole number")
    return value
