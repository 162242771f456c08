"""Forensic recording for ``trainguard diff``: batch fingerprints and normalisation layers' running statistics.

The "forensic" preset records these for its first ``forensic_steps`` steps, with every statistic at cadence 1.
They answer two questions diff cannot answer from gradients alone: were the two runs fed the same batches
(:func:`batch_fingerprint`), and did each BatchNorm really run in training mode, i.e. did its running
statistics move with each forward pass (:func:`buffer_stats`)? Both read their values back to the host at once
(one small transfer each), a cost the forensic preset accepts for its first steps only.
"""
from __future__ import annotations

from typing import Any, Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from trainguard.core.stats import BufferStats
from trainguard.diff.fingerprint import batch_fingerprint as _hash_parts
from trainguard.diff.fingerprint import flat_sample

__all__ = ["running_stat_buffers", "buffer_stats", "batch_fingerprint"]


def running_stat_buffers(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` of every running-statistics buffer (BatchNorm/InstanceNorm ``running_mean``,
    ``running_var``, ``num_batches_tracked``) in registration order; found once, the tensors update in place."""
    found = []
    for module_name, module in model.named_modules():
        if isinstance(module, _NormBase):
            for buffer_name, buffer in module.named_buffers(recurse=False):
                if buffer is not None:
                    found.append((f"{module_name}.{buffer_name}" if module_name else buffer_name, buffer))
    return found


def buffer_stats(buffers: list[tuple[str, torch.Tensor]]) -> tuple[BufferStats, ...]:
    """Mean and L2 norm of each buffer (float32), read back with one transfer."""
    if not buffers:
        return ()
    device = buffers[0][1].device
    summaries = []
    for _, tensor in buffers:
        values = tensor.detach().float().reshape(-1)
        summaries.append(torch.stack([values.mean(), torch.linalg.vector_norm(values)]).to(device))
    flat = torch.cat(summaries).tolist()
    return tuple(BufferStats(name, flat[2 * i], flat[2 * i + 1]) for i, (name, _) in enumerate(buffers))


def batch_fingerprint(inputs: Any, targets: Any = None) -> str | None:
    """Hash of a strided sample of every tensor in ``inputs`` then ``targets`` (tensors, or lists, tuples and
    dicts of them); None when there is no tensor. See :mod:`trainguard.diff.fingerprint`."""
    parts = []
    for tensor in _tensors((inputs, targets)):
        sample = flat_sample(tensor.detach().reshape(-1))
        if sample.dtype in (torch.bfloat16, torch.float16):  # numpy has no bfloat16; float32 is what is hashed
            sample = sample.float()
        parts.append((tuple(tensor.shape), sample.cpu().numpy()))
    return _hash_parts(parts)


def _tensors(data: Any) -> Iterator[torch.Tensor]:
    if isinstance(data, torch.Tensor):
        yield data
    elif isinstance(data, (list, tuple)):
        for item in data:
            yield from _tensors(item)
    elif isinstance(data, dict):
        for key in sorted(data, key=str):
            yield from _tensors(data[key])
