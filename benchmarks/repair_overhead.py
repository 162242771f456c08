"""What repairing costs: wall time of a repaired run against a healthy run of the same configuration, and the
memory the rollback snapshots hold.

One configuration (MLP 784-512-512-10, batch 128, SGD momentum, ``policy="auto"``), two runs of the same number
of batches:

- healthy: clean batches;
- repaired: the same, with faults injected: two NaN batches, one 100x gradient spike, and a run of corrupt
  batches (inputs x1000) long enough that the chain escalates skip -> clip -> LR back-off -> rollback.

The runs advance in lockstep, one batch each in a rotating order, so drift in a shared machine's speed hits
them alike; a run's wall time is the sum of its steps (zero_grad, forward, backward, update, guard). Compared:
repaired / healthy (goal <= 1.05; AUTOTRAINER repairs by retraining, at 1.19x). Also in the lockstep: the healthy
run bare (``optimizer.step()``) and under ``"observe"``, so the repairer's own cost on a healthy run shows.
One intra-op thread.

    python -m benchmarks.repair_overhead [--steps 600] [--repeats 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from typing import Any

import torch
from torch import nn

import trainguard

GOAL = 1.05
NAN_STEPS = (150, 151)
SPIKE_STEP = 250
CORRUPT = range(350, 380)


def _batch(step: int, faults: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(step)
    x = torch.randn(128, 784, generator=g)
    y = (x[:, :10] * 3).argmax(1)
    if faults:
        if step in NAN_STEPS:
            x[0, 0] = float("nan")
        elif step == SPIKE_STEP:
            x = x * 100
        elif step in CORRUPT:
            x = x * 1000
    return x, y


class Run:
    """One training run, advanced one batch at a time so several runs can be interleaved."""

    def __init__(self, mode: str, faults: bool):
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                                   nn.Linear(512, 10))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.05, momentum=0.9)
        self.guard = None if mode == "bare" else trainguard.Guard(self.model, self.opt, policy=mode)
        self.faults = faults
        self.seconds = 0.0

    def step(self, step: int) -> None:
        x, y = _batch(step, self.faults)
        start = time.perf_counter()
        self.opt.zero_grad()
        loss = nn.functional.cross_entropy(self.model(x), y)
        loss.backward()
        if self.guard is None:
            self.opt.step()
        else:
            self.guard.step(loss, batch_size=len(x))
        self.seconds += time.perf_counter() - start

    def finish(self) -> dict[str, Any]:
        if self.guard is not None:
            start = time.perf_counter()
            self.guard.close()
            self.seconds += time.perf_counter() - start
        with torch.no_grad():
            x, y = _batch(10_000, False)
            final_loss = nn.functional.cross_entropy(self.model(x), y).item()
        out: dict[str, Any] = {"wall_s": self.seconds, "final_loss": final_loss,
                               "param_bytes": sum(p.numel() * p.element_size() for p in self.model.parameters())}
        if self.guard is not None:
            out["actions"] = dict(Counter(a.kind for a in self.guard.actions))
            store = getattr(self.guard._repairer, "snapshots", None)
            if store is not None:
                out["snapshot_bytes_peak"] = store.peak_nbytes
                out["snapshots_held"] = len(store.snapshots)
        return out


def interleaved(steps: int) -> dict[str, dict[str, Any]]:
    """The four runs in lockstep, the order rotating every step, so drift in the machine's speed hits all."""
    runs = {"bare": Run("bare", False), "observe": Run("observe", False), "healthy": Run("auto", False),
            "repaired": Run("auto", True)}
    order = list(runs.values())
    for step in range(steps):
        for run in order[step % 4:] + order[:step % 4]:
            run.step(step)
    return {name: run.finish() for name, run in runs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    runs: dict[str, list[dict[str, Any]]] = {"healthy": [], "repaired": [], "bare": [], "observe": []}
    for _ in range(args.repeats):
        for name, result in interleaved(args.steps).items():
            runs[name].append(result)
    median = {name: statistics.median(r["wall_s"] for r in rs) for name, rs in runs.items()}
    repaired, healthy = runs["repaired"][-1], runs["healthy"][-1]
    ratio = median["repaired"] / median["healthy"]
    figures = {
        "steps": args.steps,
        "wall_s_median": median,
        "repaired_over_healthy": ratio,
        "auto_over_observe_healthy": median["healthy"] / median["observe"],
        "auto_over_bare_healthy": median["healthy"] / median["bare"],
        "repaired_actions": repaired.get("actions", {}),
        "healthy_actions": healthy.get("actions", {}),
        "final_loss": {name: rs[-1]["final_loss"] for name, rs in runs.items()},
        "snapshot_bytes_peak": repaired.get("snapshot_bytes_peak"),
        "param_bytes": repaired["param_bytes"],
    }
    print(f"MLP 784-512-512-10, batch 128, SGD momentum, {args.steps} steps, median of {args.repeats} interleaved rounds, 1 thread")
    for name in ("bare", "observe", "healthy", "repaired"):
        label = {"healthy": "auto, healthy", "repaired": "auto, repaired"}.get(name, name)
        print(f"  {label:<16} {median[name]:7.2f} s   final loss {figures['final_loss'][name]:.4f}")
    print(f"  repaired / healthy: {ratio:.3f}x (goal <= {GOAL}x; AUTOTRAINER retrains: 1.19x)")
    print(f"  auto / observe on the healthy run: {figures['auto_over_observe_healthy']:.3f}x; "
          f"auto / bare: {figures['auto_over_bare_healthy']:.3f}x")
    print(f"  actions in the repaired run: {figures['repaired_actions']}; in the healthy run: "
          f"{figures['healthy_actions'] or 'none'}")
    peak = figures["snapshot_bytes_peak"] or 0
    print(f"  snapshots: peak {peak / 2**20:.2f} MiB held = {peak / figures['param_bytes']:.1f}x the parameters "
          f"({figures['param_bytes'] / 2**20:.2f} MiB)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
