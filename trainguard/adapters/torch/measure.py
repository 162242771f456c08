"""Tensors -> a :class:`~trainguard.adapters.torch.record.PendingStep`: what the torch guard measures of a step.

Every step: the step vector ``[loss, ||g_1||, ...]`` (one fused norm) and the LRs. On the schedule's sampled
steps (:mod:`trainguard.core.schedule`): per-tensor weight norms, gradient sparsity, a copy of the weights for
the update ratio, Adam's moments after the update, the activation probe of that step's forward; the module
modes; the data summary of the first batches; the forensic recording. Values stay on the device until the
guard fetches them (:func:`~trainguard.adapters.torch.record.fetch`).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trainguard.adapters.torch import collect, forensic, hooks
from trainguard.adapters.torch.accumulate import MicroBatches
from trainguard.adapters.torch.modes import mode_sensitive_modules
from trainguard.adapters.torch.record import PendingStep

__all__ = ["Measurer", "host_lrs"]


def host_lrs(optimizer: torch.optim.Optimizer) -> tuple[float, ...] | None:
    """The param groups' learning rates as floats; None when one is a tensor (it may live on a device: read it
    with the step's other values, not here)."""
    lrs = [group["lr"] for group in optimizer.param_groups]
    for lr in lrs:  # a plain loop: no generator per step
        if isinstance(lr, torch.Tensor):
            return None
    return tuple(map(float, lrs))


class Measurer:
    """The measuring half of a torch guard, for one model and optimizer (see the module docstring)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device,
                 reduce: Any = None):
        self.model = model
        self.optimizer = optimizer
        self.device = device
        self.plain = True  # every gradient float32 on ``device`` (the usual case): the norms need no conversion
        self.reduce = reduce  # all-reduces the step vector under torch.distributed (None outside a group)
        self.mode_modules = mode_sensitive_modules(getattr(model, "_orig_mod", model))
        self.probe = hooks.ActivationProbe(model)
        self._running_buffers: list[tuple[str, torch.Tensor]] | None = None  # found on the first forensic step

    def step(self, step: int, loss: torch.Tensor, grads: list[torch.Tensor], names: list[str], epoch: int | None,
             batch_size: int | None, grad_norm: torch.Tensor | float | None = None) -> PendingStep:
        """The every-step statistics. ``grad_norm``: the global norm the user computed (``clip_grad_norm_``'s
        return value), taken instead of a norm pass of our own."""
        lrs = host_lrs(self.optimizer)
        entry = PendingStep(step, epoch, batch_size, lrs or (), names)
        if grad_norm is None:
            vector = collect.step_vector(loss, grads, self.device, self.plain)
        else:
            entry.given_norm = True
            vector = collect.given_norm_vector(loss, grad_norm, self.device)
        if self.reduce is None:  # both vectors are float32, 1-dim, on ``device``: add()'s checks are not needed
            entry.pieces["step"] = vector
        else:
            entry.add("step", self.reduce(vector), self.device)
        if lrs is None:  # a tensor LR: read with the step's other values
            entry.add("lrs", torch.stack([torch.as_tensor(group["lr"], dtype=torch.float32, device=self.device)
                                          for group in self.optimizer.param_groups]), self.device)
        return entry

    def layers(self, entry: PendingStep, params: list[nn.Parameter],
               grads: list[torch.Tensor]) -> list[torch.Tensor] | None:
        """Per-tensor statistics known before the update; returns the weights' copy for the update ratio."""
        if not params:
            return None
        weights = [p.detach() for p in params]
        entry.numels = [g.numel() for g in grads]
        entry.add("weight_norm", collect.tensor_norms(weights), self.device)
        entry.add("grad_sparsity", collect.grad_sparsity(grads), self.device)
        if entry.given_norm:
            entry.add("layer_grad_norm", collect.tensor_norms(grads), self.device)
        return collect.snapshot(weights)

    def after_update(self, entry: PendingStep, params: list[nn.Parameter], names: list[str],
                     before: list[torch.Tensor]) -> None:
        """The update ratio and Adam's moments, read after the optimizer step."""
        weights = [p.detach() for p in params]
        entry.add("update_norm", collect.update_norms(weights, before), self.device)
        adam = []
        for group in self.optimizer.param_groups:
            betas = group.get("betas")
            beta2 = float(betas[1]) if betas is not None else None
            eps = float(group.get("eps", 1e-8))
            for p in group["params"]:
                state = self.optimizer.state.get(p)
                if state and "exp_avg_sq" in state and p.grad is not None:
                    adam.append((p, collect.adam_moments(p.grad, state["exp_avg_sq"], state.get("step", 1.0),
                                                         beta2, eps)))
        if adam:
            index = {id(p): i for i, p in enumerate(params)}
            adam.sort(key=lambda item: index.get(id(item[0]), len(index)))
            entry.adam_names = [names[index[id(p)]] for p, _ in adam if id(p) in index]
            entry.add("adam", torch.cat([values for p, values in adam if id(p) in index]), self.device)

    def activations(self, entry: PendingStep) -> None:
        meta, values = self.probe.collect()
        if self.probe.error is not None:
            error, self.probe.error = self.probe.error, None
            raise error
        if values is not None:
            entry.activation_meta = meta
            entry.add("activations", values, self.device)

    def data(self, entry: PendingStep, inputs: Any, targets: Any, micro: MicroBatches | None = None) -> None:
        """The data summary of the step's batch, or of all its micro-batches (summarised as they came)."""
        for key, data in (("inputs", inputs), ("targets", targets)):
            if micro is not None:
                summary = micro.summary(key)
                if summary is not None:
                    entry.add(key, summary, self.device)
            elif isinstance(data, torch.Tensor) and data.is_floating_point() and data.numel() > 0:
                entry.add(key, collect.data_summary(data), self.device)

    def forensics(self, entry: PendingStep, inputs: Any, targets: Any) -> None:
        """The "forensic" preset's first steps: batch fingerprint and running statistics, for ``trainguard diff``
        (each reads back at once: a sync the preset accepts for those steps only)."""
        if inputs is not None or targets is not None:
            entry.batch_fingerprint = forensic.batch_fingerprint(inputs, targets)
        if self._running_buffers is None:
            self._running_buffers = forensic.running_stat_buffers(self.model)
        entry.buffers = forensic.buffer_stats(self._running_buffers)
