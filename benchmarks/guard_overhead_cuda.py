"""The guard on a GPU: host syncs per step and overhead, bare vs guarded, steps interleaved in blocks.

``python -m benchmarks.guard_overhead_cuda [--steps 200] [--json FILE]`` (needs a CUDA device; ``--device cpu``
runs the same code as a smoke test). Two models: the 784-512-512-10 MLP of ``benchmarks.guard_overhead`` (batch
128, SGD) and a transformer encoder large enough for the GPU to matter (8 layers, d_model 1024, sequence 256,
batch 16, AdamW, bf16 autocast). For each: the bare loop (``optimizer.step()``), then ``Guard`` under
``observe`` and under ``safe`` (the default), at the default preset. Times are wall clock over blocks of steps
closed by one ``torch.cuda.synchronize()``, blocks of the three variants interleaved so drift hits all alike.

Host syncs are counted with ``torch.cuda.set_sync_debug_mode("warn")``: every implicit device-to-host sync the
guard causes (``.item()``, a host read, a data-dependent branch) raises one warning, counted per step.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

import trainguard

VARIANTS = ("bare", "observe", "safe")


def _mlp(device: str) -> tuple[nn.Module, torch.optim.Optimizer, Callable[[], torch.Tensor]]:
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    model.to(device)
    x, y = torch.randn(128, 784, device=device), torch.randint(0, 10, (128,), device=device)

    def loss() -> torch.Tensor:
        return nn.functional.cross_entropy(model(x), y)

    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), loss


def _transformer(device: str) -> tuple[nn.Module, torch.optim.Optimizer, Callable[[], torch.Tensor]]:
    layer = nn.TransformerEncoderLayer(d_model=1024, nhead=16, dim_feedforward=4096, batch_first=True)
    model = nn.Sequential(nn.TransformerEncoder(layer, num_layers=8), nn.Linear(1024, 1024)).to(device)
    x, y = torch.randn(16, 256, 1024, device=device), torch.randn(16, 256, 1024, device=device)
    dtype = torch.bfloat16

    def loss() -> torch.Tensor:
        with torch.autocast(device_type="cuda" if device == "cuda" else "cpu", dtype=dtype):
            out = model(x)
        return nn.functional.mse_loss(out.float(), y)

    return model, torch.optim.AdamW(model.parameters(), lr=1e-4), loss


MODELS = {"mlp_784_512_512_10": _mlp, "transformer_8x1024": _transformer}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _run_block(variant: str, run: dict[str, Any], steps: int, device: str, count_syncs: bool) -> tuple[float, int]:
    optimizer, loss_fn, guard = run["optimizer"], run["loss"], run.get("guard")
    syncs = 0
    _sync(device)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if count_syncs and device == "cuda":
            torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(steps):
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn()
                loss.backward()
                if guard is None:
                    optimizer.step()
                else:
                    guard.step(loss)
        finally:
            if device == "cuda":
                torch.cuda.set_sync_debug_mode("default")
        _sync(device)
        elapsed = time.perf_counter() - start
        syncs = sum(1 for w in caught if "synchroniz" in str(w.message).lower())
    return elapsed, syncs


def measure(name: str, device: str, steps: int, block: int) -> dict[str, Any]:
    runs: dict[str, dict[str, Any]] = {}
    for variant in VARIANTS:
        torch.manual_seed(0)
        model, optimizer, loss = MODELS[name](device)
        runs[variant] = {"model": model, "optimizer": optimizer, "loss": loss}
        if variant != "bare":
            runs[variant]["guard"] = trainguard.Guard(model, optimizer, policy=variant)
    for variant in VARIANTS:  # warm-up: kernels, allocator, the guard's first sampled step
        _run_block(variant, runs[variant], 30, device, count_syncs=False)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(max(1, steps // block)):
        for variant in VARIANTS:
            elapsed, _ = _run_block(variant, runs[variant], block, device, count_syncs=False)
            times[variant].append(elapsed / block)
    syncs = {}
    for variant in VARIANTS:  # a separate pass: the sync warnings themselves cost time
        _, count = _run_block(variant, runs[variant], 100, device, count_syncs=True)
        syncs[variant] = count / 100
    for variant in VARIANTS[1:]:
        runs[variant]["guard"].close()
    bare = statistics.median(times["bare"])
    result = {"model": name, "device": device, "steps": steps, "block": block}
    for variant in VARIANTS:
        step = statistics.median(times[variant])
        result[variant] = {"step_ms": round(step * 1e3, 4), "overhead": round(step / bare - 1, 4),
                           "host_syncs_per_step": syncs[variant],
                           "block_ms_min_max": [round(min(times[variant]) * 1e3, 4),
                                                round(max(times[variant]) * 1e3, 4)]}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="timed steps per variant (default 400)")
    parser.add_argument("--block", type=int, default=50, help="steps per interleaved block (default 50)")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("guard_overhead_cuda: no CUDA device (use --device cpu for a smoke test)")
    results = []
    for name in args.models:
        r = measure(name, args.device, args.steps, args.block)
        results.append(r)
        print(f"{name} on {args.device} ({torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu'}):")
        for variant in VARIANTS:
            v = r[variant]
            print(f"  {variant:8s} step {v['step_ms']:9.3f} ms  overhead {v['overhead'] * 100:+6.2f}%  "
                  f"host syncs/step {v['host_syncs_per_step']:.2f}  blocks {v['block_ms_min_max']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"torch": torch.__version__, "results": results}, indent=1))


if __name__ == "__main__":
    main()
