"""One rank of the distributed tests (run by torchrun from test_distributed.py).

For each MODE given (``ddp``, ``fsdp``: ``fully_shard``), in one process group: a guarded MLP trained on each
rank's own data shard; the loss of rank 1 only is NaN at NAN_STEP (a NaN input). Writes this rank's final (full)
weights, actions, findings and recorded gradient norms to OUT/MODE/rank<r>.pt, with the global gradient norm of
the first step computed from the full gradients.
"""
from __future__ import annotations

import gc
import os
import sys
import weakref

import torch
import torch.distributed as dist
from torch import nn

import trainguard

NAN_STEP = 3
STEPS = 8


def full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def train(mode: str, out: str) -> weakref.ref:
    rank = dist.get_rank()
    torch.manual_seed(0)  # the same initial weights on every rank
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))
    if mode == "ddp":
        trained = nn.parallel.DistributedDataParallel(model)
    else:
        from torch.distributed.fsdp import fully_shard
        trained = fully_shard(model)
    optimizer = torch.optim.SGD(trained.parameters(), lr=0.05, momentum=0.9)
    generator = torch.Generator().manual_seed(100 + rank)  # each rank its own data shard
    guard = trainguard.Guard(trained, optimizer, policy="safe", log=os.path.join(out, "run.jsonl"))
    first_norm = None
    for step in range(STEPS):
        x = torch.randn(16, 6, generator=generator)
        y = x[:, :1] * 2.0
        if rank == 1 and step == NAN_STEP:
            x[0, 0] = float("nan")  # rank 1 alone: a forward of the guard's own on that rank would hang FSDP
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(trained(x), y)
        loss.backward()
        if step == 0:
            first_norm = float(torch.linalg.vector_norm(torch.stack([full(p.grad).norm() for p in model.parameters()])))
        guard.step(loss, batch_size=len(x), inputs=x, targets=y)
    guard.close()
    torch.save({"weights": [full(p.detach()).clone() for p in model.parameters()],
                "actions": [(a.kind, a.step, a.reason) for a in guard.actions],
                "findings": [(f.code, f.step) for f in guard.findings],
                "grad_norms": [s.grad_norm for s in guard.history],
                "first_norm": first_norm,
                "writes_log": guard.log is not None},
               os.path.join(out, f"rank{rank}.pt"))
    return weakref.ref(trained)


def main(out: str, modes: list[str]) -> None:
    dist.init_process_group("gloo")
    try:
        for mode in modes:
            os.makedirs(os.path.join(out, mode), exist_ok=True)
            dist.barrier()
            trained = train(mode, os.path.join(out, mode))
            # DDP's reducer and FSDP's state sit in reference cycles (module hooks, the guard) that hold the
            # process group and its in-flight work: free them now, while the group and the interpreter are alive,
            # not in a garbage collection during interpreter shutdown, where a gloo work object still alive
            # aborts the process, now and then ("terminate called without an active exception"; pytorch PR 179291).
            # Without this collection both wrappers are still alive at destroy_process_group.
            gc.collect()
            if trained() is not None:  # something (the guard?) still holds the model: say so, every time
                raise RuntimeError(f"the {mode} model outlived its training: it would be freed during interpreter "
                                   f"shutdown, after destroy_process_group")
        dist.barrier()  # no rank tears the group down while the other may still talk to it
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
