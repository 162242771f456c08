"""Per-step statistics: the one input of the core.

Adapters (torch, keras) turn tensors into these plain records; detectors, the diagnosis engine, the run log
and the doctor read them. Every field but ``step`` is optional, because a finished run's log may carry only a
loss, and per-layer fields are filled only on the steps the preset samples.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["LayerStats", "ActivationStats", "BufferStats", "TensorSummary", "StepStats"]


@dataclass(frozen=True, slots=True)
class LayerStats:
    """Statistics of one parameter tensor, named as the framework names it (``"fc1.weight"``)."""

    name: str
    grad_norm: float | None = None
    weight_norm: float | None = None
    # ||W_after - W_before|| / ||W_before|| of THIS step's update (the adapter copies the weights before the
    # optimizer step, on sampled steps only); weight_norm is ||W_before||.
    update_ratio: float | None = None
    grad_abs_mean: float | None = None
    zero_grad_fraction: float | None = None
    # Adam family only: RMS of g / max(sqrt(v), eps) (Wortsman et al. 2023) and sqrt(v)'s spread.
    adam_update_rms: float | None = None
    adam_sqrt_v_min: float | None = None
    adam_sqrt_v_median: float | None = None
    # The same RMS over the entries whose v its dtype holds at full precision (v at least the dtype's smallest normal
    # number, or no gradient): Wortsman et al.'s lag. In float16, v = 0.001 g^2 is subnormal or 0 for |g| < 0.25, and
    # g / max(sqrt(v), eps) there reads the dtype, not a lag; 0.0 when no entry is held. Equal to the RMS in float32.
    adam_lag_rms: float | None = None

    def lag_rms(self) -> float | None:
        """The lag RMS where the adapter measured it, else the RMS over every entry (a Keras step compiled into a
        graph, a log written before the lag RMS; equal in float32)."""
        return self.adam_lag_rms if self.adam_lag_rms is not None else self.adam_update_rms


@dataclass(frozen=True, slots=True)
class ActivationStats:
    """Output health of one module, sampled through forward hooks every few steps.

    ``kind`` is the activation that follows or is the module (``"relu"``, ``"sigmoid"``, ``"tanh"``, ``"linear"``).
    ``dead_fraction``: units whose output was <= 0 for every sample in the batch (ReLU).
    ``saturated_fraction``: inputs of a sigmoid/tanh beyond trainguard's saturation bounds (|x| > 5 for
    sigmoid, |x| > 2.5 for tanh: the slope there is under 3% of its maximum). ``output_std``: std of the output over the batch.
    """

    name: str
    kind: str
    dead_fraction: float | None = None
    saturated_fraction: float | None = None
    output_std: float | None = None


@dataclass(frozen=True, slots=True)
class BufferStats:
    """Summary of one running-statistics buffer (BatchNorm ``running_mean``/``running_var``/
    ``num_batches_tracked``, Keras ``moving_mean``/``moving_variance``), named as the framework names it.

    Forensic recording: these buffers change in the forward pass only in training mode, so comparing them
    between two runs shows a layer that ran in inference mode (``trainguard diff``).
    """

    name: str
    mean: float | None = None
    norm: float | None = None


@dataclass(frozen=True, slots=True)
class TensorSummary:
    """Scale of a data tensor (inputs or targets of one of the first batches). ``min``/``max``: its smallest and
    largest value, where the adapter measured them (None in older logs and compiled Keras steps)."""

    mean: float
    std: float
    abs_max: float
    min: float | None = None
    max: float | None = None


@dataclass(slots=True)
class StepStats:
    """Everything measured at one optimizer step. ``layers`` is in forward (registration) order.

    Read-only by contract (change one with ``dataclasses.replace``) but not a frozen dataclass: a guard builds one
    every step, and a frozen one with this many fields costs ~7 us more to build (a slot set through
    ``object.__setattr__`` each), a few percent of the guard's budget on a small model."""

    step: int
    loss: float | None = None
    epoch: int | None = None
    batch_size: int | None = None
    lrs: tuple[float, ...] = ()
    grad_norm: float | None = None
    loss_finite: bool = True
    grads_finite: bool = True
    weights_finite: bool = True
    first_nonfinite_grad: str | None = None
    # Module that first produced a non-finite output (found by forward hooks after the first NaN).
    first_nonfinite_module: str | None = None
    layers: tuple[LayerStats, ...] = ()
    activations: tuple[ActivationStats, ...] = ()
    # Modules (BatchNorm, Dropout) found in eval mode while gradients flow; None when not sampled.
    eval_mode_modules: tuple[str, ...] | None = None
    inputs: TensorSummary | None = None
    targets: TensorSummary | None = None
    # Whether the update of this step was applied (False when a repair skipped it).
    applied: bool = True
    # Forensic recording: a hash of a strided sample of the batch's inputs and targets.
    batch_fingerprint: str | None = None
    # Forensic recording: running statistics of normalisation layers (BatchNorm), after this step's forward.
    buffers: tuple[BufferStats, ...] = ()
    # The cap of the gradient clipping the run applies itself (``clip_grad_norm_``'s ``max_norm``, told to the guard
    # as ``Guard(clip=...)``); ``grad_norm`` is then the norm before clipping. None: the run does not clip, as far
    # as the guard knows. A norm above the cap was clipped to it: routine, not an explosion.
    clip_max_norm: float | None = None
    # AMP: the ``torch.amp.GradScaler``'s scale at this step, and whether the scaler skipped the update because the
    # scaled gradients overflowed (routine for float16: the scale backs off). A skipped step's gradients are no
    # gradient of the run: ``grad_norm`` is None and ``grads_finite`` stays true; a non-finite loss is still one.
    loss_scale: float | None = None
    scaler_skipped: bool = False
    # Gradient accumulation: how many micro-batches this optimizer step summed (None: one batch, not accumulated);
    # ``loss`` is then their mean and ``batch_size`` their total.
    micro_batches: int | None = None
    # The first micro-batch (0-based) whose loss was non-finite, when the step accumulated several.
    first_nonfinite_micro_batch: int | None = None
    # Backward passes whose gradients this update applied (since the gradients were last zeroed), counted by the
    # torch guard on one parameter whether or not the loop told it of micro-batches (adapters/torch/backward_count.py).
    backward_passes: int | None = None
    # A light step of an overhead budget (``trainguard.core.budget``): the loss (LRs, batch size, backward passes,
    # module modes) measured, not the gradients; the diagnosis reads the measured steps of such a run.
    light: bool = False
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def lr(self) -> float | None:
        return self.lrs[0] if self.lrs else None

    @property
    def finite(self) -> bool:
        return self.loss_finite and self.grads_finite and self.weights_finite

    def to_dict(self) -> dict[str, Any]:
        """A plain dict; None and empty fields are left out (the run-log writer encodes NaN/Inf)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or (value in ((), {}) and f.name != "eval_mode_modules"):
                continue  # an empty eval_mode_modules is kept: "sampled, none in eval mode" differs from None
            if f.name == "layers":
                value = [_compact(asdict(layer)) for layer in value]
            elif f.name == "activations":
                value = [_compact(asdict(a)) for a in value]
            elif f.name == "buffers":
                value = [_compact(asdict(b)) for b in value]
            elif f.name in ("inputs", "targets"):
                value = _compact(asdict(value))
            elif f.name in ("lrs", "eval_mode_modules"):
                value = list(value)
            out[f.name] = value
        if out.get("applied") is True:
            del out["applied"]
        if out.get("scaler_skipped") is False:
            del out["scaler_skipped"]
        if out.get("light") is False:
            del out["light"]
        for flag in ("loss_finite", "grads_finite", "weights_finite"):
            if out.get(flag) is True:
                del out[flag]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepStats:
        """Inverse of :meth:`to_dict`. Unknown keys are ignored so newer logs stay readable; a known field of the
        wrong type raises TypeError/ValueError (the run-log reader skips that record and says so)."""
        known = _field_names(cls)
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["step"] = _whole(data["step"], "step")
        for key in ("epoch", "batch_size", "micro_batches", "first_nonfinite_micro_batch", "backward_passes"):
            if kwargs.get(key) is not None:
                kwargs[key] = _whole(kwargs[key], key)
        for key in ("loss_finite", "grads_finite", "weights_finite", "applied", "scaler_skipped"):
            if key in kwargs and not isinstance(kwargs[key], bool):
                raise TypeError(f"{key} is not true/false")
        for key in ("first_nonfinite_grad", "first_nonfinite_module", "batch_fingerprint"):
            if kwargs.get(key) is not None:
                _text(kwargs[key], key)
        if "loss" in kwargs:
            kwargs["loss"] = _float_or_none(kwargs["loss"])
        for key in ("grad_norm", "clip_max_norm", "loss_scale"):
            if key in kwargs:
                kwargs[key] = _float_or_none(kwargs[key])
        kwargs["lrs"] = tuple(_float_or_none(v) for v in _list(kwargs.get("lrs", []), "lrs"))
        if kwargs.get("eval_mode_modules") is not None:
            kwargs["eval_mode_modules"] = tuple(_text(m, "eval_mode_modules")
                                                for m in _list(kwargs["eval_mode_modules"], "eval_mode_modules"))
        if "layers" in kwargs:
            kwargs["layers"] = tuple(
                LayerStats(**{k: (_text(v, k) if k == "name" else _float_or_none(v)) for k, v in layer.items()})
                for layer in _list(kwargs["layers"], "layers")
            )
        if "activations" in kwargs:
            kwargs["activations"] = tuple(
                ActivationStats(**{k: (_text(v, k) if k in ("name", "kind") else _float_or_none(v))
                                   for k, v in a.items()})
                for a in _list(kwargs["activations"], "activations")
            )
        if "buffers" in kwargs:
            kwargs["buffers"] = tuple(
                BufferStats(**{k: (_text(v, k) if k == "name" else _float_or_none(v)) for k, v in b.items()})
                for b in _list(kwargs["buffers"], "buffers")
            )
        for key in ("inputs", "targets"):
            if kwargs.get(key) is not None:
                kwargs[key] = TensorSummary(**{k: _float_or_none(v) for k, v in kwargs[key].items()})
        if "extra" in kwargs:
            kwargs["extra"] = {_text(k, "extra"): _float_or_none(v) for k, v in kwargs["extra"].items()}
        return cls(**kwargs)


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls))  # once per class: a million-step log calls from_dict per line


def _compact(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _float_or_none(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"{type(value).__name__} is not a number")
    try:
        return float(value)  # float("nan") / float("inf") read the strings back
    except OverflowError:  # an integer beyond float range: as JSON's 1e400, an infinity
        return math.inf if value > 0 else -math.inf


_INT64 = 1 << 63


def _whole(value: Any, key: str) -> int:
    """A step, epoch or batch size: an integer within int64 (an integral float is accepted)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not -_INT64 <= value < _INT64:
        raise TypeError(f"{key} is not a whole number")
    return value


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{key} is not text")
    return value


def _list(value: Any, key: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise TypeError(f"{key} is not a list")
    return value
