"""In-memory rollback snapshots: model, optimizer, LR scheduler and RNG states, copied to CPU.

A snapshot holds everything a bit-exact restore needs: the model's ``state_dict`` (parameters and buffers, e.g.
BatchNorm running statistics), the optimizer's (moments, step counts, param-group hyper-parameters such as the
LR the scheduler wrote), the scheduler's, and the RNG states of torch, numpy, Python's ``random`` and CUDA when it
is in use. :class:`SnapshotStore` keeps the ``keep`` newest, so memory stays bounded at about
``keep * (parameters + optimizer state)``, reported by :attr:`SnapshotStore.nbytes`.
"""
from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["Snapshot", "SnapshotStore", "take_snapshot", "check_snapshot", "restore_snapshot"]


def _to_cpu(value: Any) -> Any:
    """A deep copy with every tensor cloned to CPU memory."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return copy.deepcopy(value)


def _nbytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    return 0


@dataclass(frozen=True)
class Snapshot:
    label: int  # the step whose update it precedes
    model: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None
    rng: dict[str, Any]
    nbytes: int


def take_snapshot(label: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                  scheduler: Any = None) -> Snapshot:
    rng: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    model_state = _to_cpu(model.state_dict())
    optimizer_state = _to_cpu(optimizer.state_dict())
    scheduler_state = _to_cpu(scheduler.state_dict()) if scheduler is not None else None
    size = _nbytes(model_state) + _nbytes(optimizer_state)
    return Snapshot(label, model_state, optimizer_state, scheduler_state, rng, size)


def check_snapshot(snap: Snapshot, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Raises ``ValueError`` when ``snap`` cannot be restored into ``model`` and ``optimizer`` as they are now
    (a parameter added, removed or reshaped, a param group added since): nothing is touched."""
    current = model.state_dict()
    if current.keys() != snap.model.keys():
        changed = sorted(current.keys() ^ snap.model.keys())
        raise ValueError(f"the snapshot of step {snap.label} does not fit the model any more "
                         f"(tensors added or removed since: {', '.join(changed[:3])})")
    for name, value in current.items():
        saved = snap.model[name]
        if isinstance(value, torch.Tensor) and isinstance(saved, torch.Tensor) and value.shape != saved.shape:
            raise ValueError(f"the snapshot of step {snap.label} does not fit the model any more ({name} is "
                             f"{tuple(value.shape)}, was {tuple(saved.shape)})")
    groups = [len(group["params"]) for group in optimizer.param_groups]
    saved_groups = [len(group["params"]) for group in snap.optimizer.get("param_groups", ())]
    if groups != saved_groups:
        raise ValueError(f"the snapshot of step {snap.label} does not fit the optimizer any more "
                         f"(parameters per group {groups}, were {saved_groups})")


def restore_snapshot(snap: Snapshot, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler: Any = None) -> None:
    """Puts every state back, in place: parameters keep their identity, so the optimizer still holds them.

    All or nothing: the snapshot is checked first (:func:`check_snapshot`), and if a load still fails half-way
    the states already changed are put back from a copy taken just before, then the error is raised, so model
    and optimizer never disagree. The optimizer and scheduler get copies, because ``Optimizer.load_state_dict``
    may keep the very tensors it is given (``.to()`` on the same device and dtype does not copy) and would then
    update the snapshot in place.
    """
    check_snapshot(snap, model, optimizer)
    undo = take_snapshot(snap.label, model, optimizer, scheduler)
    try:
        _load(snap, model, optimizer, scheduler)
    except BaseException:
        _load(undo, model, optimizer, scheduler)
        raise


def _load(snap: Snapshot, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
    with torch.no_grad():
        model.load_state_dict(snap.model)
    optimizer.load_state_dict(_to_cpu(snap.optimizer))
    if scheduler is not None and snap.scheduler is not None:
        scheduler.load_state_dict(_to_cpu(snap.scheduler))
    torch.set_rng_state(snap.rng["torch"])
    np.random.set_state(snap.rng["numpy"])
    random.setstate(snap.rng["python"])
    if "cuda" in snap.rng:
        torch.cuda.set_rng_state_all(snap.rng["cuda"])


class SnapshotStore:
    """The ``keep`` newest snapshots, oldest first."""

    def __init__(self, keep: int):
        self.keep = keep
        self.snapshots: list[Snapshot] = []
        self.peak_nbytes = 0

    def add(self, snap: Snapshot, pinned: int | None = None) -> None:
        """Keeps the ``keep`` newest, and the one labelled ``pinned`` (a running trial's) whatever its age."""
        held = self.snapshots + [snap]
        newest = held[-self.keep:]
        self.snapshots = [s for s in held[:-self.keep] if s.label == pinned][-1:] + newest
        self.peak_nbytes = max(self.peak_nbytes, self.nbytes)

    def get(self, label: int) -> Snapshot | None:
        return next((s for s in self.snapshots if s.label == label), None)

    def forget_after(self, label: int) -> None:
        self.snapshots = [s for s in self.snapshots if s.label <= label]

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.snapshots)

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.snapshots]
