"""torch.distributed: one view of each step on every rank, and one writer.

Under DDP every rank holds the same (all-reduced) gradients but its own loss; under FSDP every rank holds a
shard of each gradient. For every rank to take the same decision (skip, clip, LR back-off, rollback, stop),
each step's ``[loss, ||g_1||, ..., ||g_n||]`` vector is all-reduced before any statistic or decision is drawn
from it (:func:`step_reducer`):

- the loss is averaged over the ranks (the loss of the global batch, for equal local batches);
- replicated gradients (DDP): the norms are averaged: identical on every rank already, so this only makes them
  bitwise the same everywhere;
- sharded gradients (FSDP): ``||g||^2 = sum over ranks of ||g_shard||^2`` (what
  ``torch.distributed.fsdp.FullyShardedDataParallel.clip_grad_norm_`` computes), so the norms are the square
  root of the all-reduced sum of squares (:func:`sharded_norms`).

A NaN or Inf anywhere becomes non-finite everywhere (a sum with a NaN is NaN), so a NaN on one rank makes every
rank skip the same step. The repair policies read nothing else that differs between DDP ranks (the weights and
Adam's moments are replicated), so their decisions agree without a broadcast. Per-rank views (activations,
input summaries) stay local: they are rank 0's, and only rank 0 writes the run log (:func:`is_log_rank`).

Under a process group the guard runs no forward of its own (the search for the first non-finite module): a
forward taken on some ranks only would issue collectives (FSDP's all-gathers, DDP's buffer broadcast,
SyncBatchNorm) that the other ranks never match. ``first_nonfinite_grad`` still names the first layer.
Under FSDP the per-tensor statistics of sampled steps (weight norms, update ratios, Adam's RMS) are off: they
would be statistics of shards.

One all-reduce per step, of ``n + 1`` floats, on the gradients' device.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = ["is_distributed", "is_log_rank", "is_sharded", "sharded_norms", "step_reducer"]


def is_distributed() -> bool:
    """Whether a process group with more than one rank is running."""
    return (torch.distributed.is_available() and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1)


def is_log_rank() -> bool:
    """True on rank 0, and in any process that is not part of a process group: the one that writes logs."""
    return not is_distributed() or torch.distributed.get_rank() == 0


def is_sharded(model: nn.Module) -> bool:
    """Whether the model's gradients are sharded across ranks: wrapped by FSDP (``FullyShardedDataParallel``) or
    holding DTensor parameters (``fully_shard``)."""
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # a torch built without distributed support
        return False
    if any(isinstance(m, FullyShardedDataParallel) for m in model.modules()):
        return True
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:
        return False
    return any(isinstance(p, DTensor) for p in model.parameters())


def sharded_norms(local_norms: torch.Tensor) -> torch.Tensor:
    """Global L2 norms from each rank's shard norms: ``sqrt(all_reduce_sum(local ** 2))``."""
    squares = local_norms.float().square()
    torch.distributed.all_reduce(squares, op=torch.distributed.ReduceOp.SUM)
    return squares.sqrt()


def _reduce(vector: torch.Tensor, sharded: bool) -> torch.Tensor:
    """``[loss, norms...]`` -> ``[mean loss, global norms...]`` in one all-reduce."""
    world = torch.distributed.get_world_size()
    if hasattr(vector, "to_local"):  # fully_shard's DTensor gradients: [loss, this rank's shard norms]
        vector = vector.to_local()
    values = vector.float().clone()
    if sharded:
        values[1:] = values[1:].square()
    torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.SUM)
    values[0] = values[0] / world
    values[1:] = values[1:].sqrt() if sharded else values[1:] / world
    return values


def step_reducer(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The reduction of the step vector for this process group, or None outside of one (nothing to do)."""
    if not is_distributed():
        return None
    sharded = is_sharded(model)
    return lambda vector: _reduce(vector, sharded)
