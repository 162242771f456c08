"""One step's statistics while they still live on the device, and the single fetch that brings them home.

The guard measures into a :class:`PendingStep` (named device tensors, "pieces") and what it knows on the host
(step, epoch, names...). :func:`fetch` concatenates the pieces of every pending step and reads them back with
one ``tolist()``: on GPU that is the only host-device sync, taken every ``fetch_every`` steps.
:meth:`PendingStep.build` then turns the numbers into a :class:`~trainguard.core.stats.StepStats`.

Pieces (float32 vectors):

- ``step``: ``[loss, ||g_1||, ..., ||g_n||]`` for the parameters that had a gradient (``names``), every step.
- ``weight_norm``, ``update_norm``, ``grad_sparsity`` (sum |g| then non-zero counts): per tensor, sampled steps.
- ``adam``: ``[update RMS, min sqrt(v_hat), median sqrt(v_hat), lag RMS]`` per Adam-family tensor (``adam_names``).
- ``activations``: two values per probed module (see ``hooks.ActivationProbe``).
- ``inputs`` / ``targets``: ``[mean, std, abs max]``. ``lrs``: tensor learning rates. ``applied``: a device flag.
- ``scaler``: ``[found_inf, scale]`` of an AMP GradScaler (:mod:`~trainguard.adapters.torch.amp`).
- ``micro_losses``: each micro-batch's loss, when the step accumulated them (:mod:`~trainguard.adapters.torch.accumulate`).
- ``layer_grad_norm``: per-tensor gradient norms on sampled steps when the user gave the global norm (``step`` is
  then ``[loss, grad_norm]``: ``given_norm``); the gradients were clipped by then, so they are scaled back by the
  clip's factor when its cap is known.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import torch

from trainguard.core.stats import ActivationStats, BufferStats, LayerStats, StepStats, TensorSummary

__all__ = ["PendingStep", "fetch", "all_finite"]


def all_finite(values: list[float]) -> bool:
    """Whether every value is finite: their sum is, since they come from float32 tensors (a sum of up to 2**960
    of them cannot overflow a double) and a NaN or an Inf makes it NaN or Inf."""
    return math.isfinite(sum(values))


class PendingStep:
    """What one step measured, before and after its single fetch."""

    __slots__ = ("step", "epoch", "batch_size", "lrs", "names", "numels", "adam_names", "activation_meta",
                 "eval_mode_modules", "first_nonfinite_module", "located", "applied", "batch_fingerprint", "buffers",
                 "given_norm", "clip_max_norm", "micro_batches", "first_nonfinite_micro_batch", "pieces", "values",
                 "backward_passes")

    def __init__(self, step: int, epoch: int | None, batch_size: int | None, lrs: tuple[float, ...],
                 names: Sequence[str]):
        self.step = step
        self.epoch = epoch
        self.batch_size = batch_size
        self.lrs = lrs
        self.names = names  # parameters with a gradient at this step, forward order
        self.numels: Sequence[int] = ()
        self.adam_names: list[str] = []
        self.activation_meta: list[tuple[str, str]] = []  # (module name, kind) in forward order
        self.eval_mode_modules: tuple[str, ...] | None = None
        self.first_nonfinite_module: str | None = None
        self.located = False  # the non-finite search ran for this step
        self.batch_fingerprint: str | None = None  # forensic recording (see forensic.py)
        self.buffers: tuple[BufferStats, ...] = ()
        self.applied: bool | None = True  # None: the flag is a device piece
        self.given_norm = False  # ``step`` is [loss, the global norm the user gave]
        self.clip_max_norm: float | None = None  # the run's own clipping cap
        self.micro_batches: int | None = None
        self.first_nonfinite_micro_batch: int | None = None  # found on the host already (CPU)
        self.backward_passes: int | None = None  # see backward_count.py
        self.pieces: dict[str, torch.Tensor] = {}
        self.values: dict[str, list[float]] = {}

    def add(self, key: str, tensor: torch.Tensor, device: torch.device) -> None:
        if tensor.device != device:
            tensor = tensor.to(device, non_blocking=True)
        if tensor.dim() != 1 or tensor.dtype != torch.float32:
            tensor = tensor.reshape(-1).float()
        self.pieces[key] = tensor

    def prefetch(self, key: str) -> list[float]:
        """Reads one piece now (used on CPU, where a read costs nothing, to act before the update)."""
        if key not in self.values:
            self.values[key] = self.pieces[key].tolist()  # the piece stays: a repairer may still use it
        return self.values[key]

    def step_finite(self) -> bool:
        return all_finite(self.prefetch("step"))

    def routine_overflow(self) -> bool:
        """Whether the step's only non-finite values are an AMP scaler's overflow at a scale above 1 (see amp.py):
        the scaled gradients overflowed, the loss is finite. Nothing of the model's to search for."""
        if "scaler" not in self.pieces and "scaler" not in self.values:
            return False
        found, scale = self.prefetch("scaler")
        return found > 0 and scale > 1 and math.isfinite(self.prefetch("step")[0])

    @property
    def was_applied(self) -> bool:
        """Whether this step's update was applied (after the fetch when the flag lived on the device)."""
        return self.applied if self.applied is not None else self.values["applied"][0] != 0.0

    def build(self) -> StepStats:
        values = self.values
        loss = grad_norm = None
        grads_finite = True
        first_bad = None
        norms: list[float] = []
        if "step" in values:
            loss, *norms = values["step"]
            if norms:
                grad_norm = math.sqrt(math.fsum([n * n for n in norms]))  # NaN or Inf when any norm is
                if self.given_norm:
                    grad_norm = norms[0]
                    grads_finite = math.isfinite(grad_norm)  # clipped by now: no gradient left to name
                elif not math.isfinite(grad_norm):  # some norm is NaN or Inf (or squares past 1e308): name the first
                    for name, n in zip(self.names, norms):
                        if not math.isfinite(n):
                            grads_finite, first_bad = False, name
                            break
        loss_scale, scaler_skipped = None, False
        if "scaler" in values:
            found, loss_scale = values["scaler"]
            scaler_skipped = found > 0
            if scaler_skipped and loss_scale > 1:  # the scaled gradients overflowed: no gradient of the run
                grad_norm, grads_finite, first_bad = None, True, None
        first_bad_micro = self.first_nonfinite_micro_batch
        if first_bad_micro is None and "micro_losses" in values:
            first_bad_micro = next((i for i, v in enumerate(values["micro_losses"]) if not math.isfinite(v)), None)
        layers: tuple[LayerStats, ...] = ()
        weights_finite = True
        if "weight_norm" in values:
            layers = self._layers(self._given_layer_norms(grad_norm) if self.given_norm else norms)
            weights_finite = all(math.isfinite(w) for w in values["weight_norm"])
            if scaler_skipped and grad_norm is None:  # an overflow's gradients: none of the run's, per layer neither
                layers = tuple(dataclasses.replace(layer, grad_norm=None, grad_abs_mean=None, zero_grad_fraction=None)
                               for layer in layers)
        return StepStats(
            step=self.step,
            loss=loss,
            epoch=self.epoch,
            batch_size=self.batch_size,
            lrs=tuple(values["lrs"]) if "lrs" in values else self.lrs,
            grad_norm=grad_norm,
            loss_finite=loss is None or math.isfinite(loss),
            grads_finite=grads_finite,
            weights_finite=weights_finite,
            first_nonfinite_grad=first_bad,
            first_nonfinite_module=self.first_nonfinite_module,
            layers=layers,
            activations=self._activations(),
            eval_mode_modules=self.eval_mode_modules,
            inputs=TensorSummary(*values["inputs"]) if "inputs" in values else None,
            targets=TensorSummary(*values["targets"]) if "targets" in values else None,
            applied=self.was_applied and not scaler_skipped,
            batch_fingerprint=self.batch_fingerprint,
            buffers=self.buffers,
            clip_max_norm=self.clip_max_norm,
            loss_scale=loss_scale,
            scaler_skipped=scaler_skipped,
            micro_batches=self.micro_batches,
            first_nonfinite_micro_batch=first_bad_micro,
            backward_passes=self.backward_passes,
        )

    def _given_layer_norms(self, grad_norm: float | None) -> list[float]:
        """Per-tensor norms of the clipped gradients, scaled back by the clip's factor (``clip_grad_norm_``'s
        ``min(1, max_norm / (norm + 1e-6))``) when the cap and a finite norm are known."""
        norms = self.values.get("layer_grad_norm", [])
        cap = self.clip_max_norm
        if cap is None or grad_norm is None or not math.isfinite(grad_norm):
            return norms
        factor = min(1.0, cap / (grad_norm + 1e-6))
        return [n / factor for n in norms] if factor > 0 else norms

    def _layers(self, grad_norms: list[float]) -> tuple[LayerStats, ...]:
        values = self.values
        n = len(self.names)
        weight = values["weight_norm"]
        update = values.get("update_norm")
        sparsity = values.get("grad_sparsity")
        adam = values.get("adam")
        adam_at = {name: 4 * i for i, name in enumerate(self.adam_names)}
        layers = []
        for i, name in enumerate(self.names):
            numel = self.numels[i]
            a = adam_at.get(name)
            layers.append(LayerStats(
                name=name,
                grad_norm=grad_norms[i] if i < len(grad_norms) else None,
                weight_norm=weight[i],
                update_ratio=update[i] / weight[i] if update is not None and weight[i] > 0 else None,
                grad_abs_mean=sparsity[i] / numel if sparsity is not None else None,
                zero_grad_fraction=1.0 - sparsity[n + i] / numel if sparsity is not None else None,
                adam_update_rms=adam[a] if a is not None and adam is not None else None,
                adam_sqrt_v_min=adam[a + 1] if a is not None and adam is not None else None,
                adam_sqrt_v_median=adam[a + 2] if a is not None and adam is not None else None,
                adam_lag_rms=adam[a + 3] if a is not None and adam is not None else None,
            ))
        return tuple(layers)

    def _activations(self) -> tuple[ActivationStats, ...]:
        flat = self.values.get("activations")
        if not flat:
            return ()
        out = []
        for i, (name, kind) in enumerate(self.activation_meta):
            health, std = flat[2 * i], flat[2 * i + 1]
            out.append(ActivationStats(
                name=name, kind=kind, output_std=std,
                dead_fraction=health if kind == "relu" else None,
                saturated_fraction=health if kind in ("sigmoid", "tanh") else None,
            ))
        return tuple(out)


def fetch(entries: Sequence[PendingStep]) -> None:
    """Reads every pending piece of ``entries`` back to the host with one transfer."""
    slots = [(entry, key, tensor) for entry in entries for key, tensor in entry.pieces.items()
             if key not in entry.values]
    if not slots:
        for entry in entries:
            entry.pieces.clear()
        return
    if len(slots) == 1:
        flat = slots[0][2].tolist()
    else:
        flat = torch.cat([tensor for _, _, tensor in slots]).tolist()
    at = 0
    for entry, key, tensor in slots:
        size = tensor.numel()
        entry.values[key] = flat[at:at + size]
        at += size
    for entry in entries:
        entry.pieces.clear()
