"""What the torch guard costs a nanoGPT-style loop: AMP with a GradScaler, gradient accumulation, clip_grad_norm_.

The model and data are those of docs/real-loops.md (its nanoGPT-style block, read from the page), made larger
here (``--width``, ``--block-size``). Three identical copies train side by side on the same micro-batches: bare
(``scaler.step``/``scaler.update``), guarded under ``observe`` and guarded under ``safe``
(``guard.accumulate`` per micro-batch, ``guard.step(grad_norm=...)``); each round times one optimizer step of each
(``--accumulation`` micro-batches: forward, backward, and the update), rotating which goes first, so drift in the
machine's speed hits all alike. Reported: median step time of each, and the guarded medians' excess over the bare
one. CPU time of the training thread (``time.thread_time``), one intra-op thread.

    python -m benchmarks.real_loop_overhead [--steps 120] [--dtype float16|bfloat16|float32] [--json out.json]
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import trainguard

PAGE = Path(__file__).resolve().parents[1] / "docs" / "real-loops.md"
SECTION = "## nanoGPT-style: AMP, gradient accumulation, clipping, an LR set per iteration"


def page_definitions() -> dict[str, Any]:
    """The page's nanoGPT-style definitions (data, ``get_batch``, ``CharGPT``), without its training loop."""
    text = PAGE.read_text()
    block = re.search(r"```python\n(.*?)```", text[text.index(SECTION):], re.S).group(1)
    head = block.partition("model = CharGPT(")[0]
    namespace: dict[str, Any] = {"__name__": "__real_loop__"}
    exec(compile(head, str(PAGE), "exec"), namespace)  # noqa: S102 - the page's own code
    return namespace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120, help="optimizer steps timed per copy")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--accumulation", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ns = page_definitions()
    ns["block_size"], ns["batch_size"] = args.block_size, args.batch_size
    torch.manual_seed(0)
    base = ns["CharGPT"](len(ns["chars"]), width=args.width, heads=4)
    dtype = getattr(torch, args.dtype)
    copies = {}
    for name in ("bare", "observe", "safe"):
        model = copy.deepcopy(base)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, betas=(0.9, 0.95))
        scaler = torch.amp.GradScaler("cpu", enabled=dtype == torch.float16)
        guard = None if name == "bare" else trainguard.Guard(model, optimizer, policy=name, scaler=scaler, clip=1.0)
        copies[name] = (model, optimizer, scaler, guard)

    def one_step(name: str, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
        model, optimizer, scaler, guard = copies[name]
        start = time.thread_time()
        for x, y in batches:
            with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                _, loss = model(x, y)
            if guard is not None:
                guard.accumulate(loss, inputs=(x, y), targets=y)
            scaler.scale(loss / len(batches)).backward()
        scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if guard is not None:
            guard.step(grad_norm=norm)
        else:
            scaler.step(optimizer)
            scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return time.thread_time() - start

    times: dict[str, list[float]] = {name: [] for name in copies}
    order = list(copies)
    for step in range(args.warmup + args.steps):
        batches = [ns["get_batch"]() for _ in range(args.accumulation)]
        order = order[1:] + order[:1]
        for name in order:
            elapsed = one_step(name, batches)
            if step >= args.warmup:
                times[name].append(elapsed)
    for _, _, _, guard in copies.values():
        if guard is not None:
            guard.close()
    medians = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "model": f"CharGPT 2 layers, width {args.width}, block {args.block_size}, batch {args.batch_size} x "
                 f"{args.accumulation} micro-batches, {args.dtype}, AdamW, clip 1.0",
        "steps": args.steps,
        "median_step_ms": {name: 1000 * value for name, value in medians.items()},
        "overhead": {name: medians[name] / medians["bare"] - 1 for name in ("observe", "safe")},
        "same_weights_observe": all(torch.equal(a, b) for a, b in zip(copies["bare"][0].state_dict().values(),
                                                                        copies["observe"][0].state_dict().values())),
    }
    print(result["model"])
    for name, value in result["median_step_ms"].items():
        extra = f"  (+{100 * result['overhead'][name]:.1f}%)" if name != "bare" else ""
        print(f"  {name:8s} {value:8.2f} ms per optimizer step{extra}")
    print(f"  observe bitwise equal to bare: {result['same_weights_observe']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
