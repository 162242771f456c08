"""What the torch guard costs a training step: guard vs bare, interleaved A/B in one process, on CPU.

Two identical copies of a model train side by side on the same batch; each round times one bare step
(``optimizer.step()``) and one guarded step (``guard.step(loss, ...)``), alternating which goes first, so drift
in the machine's speed hits both alike. Reported per model and preset:

- median step time, bare and guarded (forward + backward + update, and the guard's forward hooks);
- the guard's self-time per step: time inside ``guard.step`` minus the optimizer's own ``step()`` (timed by
  wrapping the instance's ``step``), plus its activation probe's time inside the sampled forwards, as a mean
  (sampled steps included) and as a median;
- self-time as a share of the bare median step. The target at the default preset is <= 2%;
- the A/B overhead: guarded median step minus bare median step, as a share of the bare one. It can be lower
  than the self-time: the guard's gradient-norm pass brings the gradients into cache, and the optimizer's
  step after it runs faster than in the bare run.

Times are CPU time of the training thread (``time.thread_time``) with one intra-op thread
(``torch.set_num_threads(1)``): on a shared machine, wall time also counts the other processes' turns.

``--breakdown`` also splits the self-time (median per step, timers of their own around each part, so the
parts and the self-time then include those timers' ~1 us each): the gradient-norm pass (``collect.step_vector``),
the session's ``observe`` (detectors, history, policy, run log), turning fetched values into a ``StepStats``, the
policy's decision before the update (``safe``, ``auto``), the activation probe (sampled forwards only: 0 in the
median), and the rest of the adapter (its bookkeeping; the sampled steps' per-layer pass counts in the mean,
rarely in the median); and the mean self-time apart: the
steps that take only the every-step statistics, and what the sampled steps (the preset's ``layer_every``) add to
the mean step.

The default guard has an overhead budget (``Guard(..., budget=0.02)``, :mod:`trainguard.core.budget`): full
measurement on some steps only, so that its mean self-time stays within 2% of the step it times; the rows
``every step`` are ``Guard(..., budget=None)``, every step measured in full. A budgeted guard times the interval
between its own steps, so its copy runs in turns of ``BUDGET_BLOCK`` (500) steps, the bare copy's in between (step
by step, the bare copy's step would read as its own: a budget of 2% of twice the step), and its timing starts
after ``RAMP_STEPS * DEFAULT_CAP`` (2,048) steps times the model's share of ``--steps``, over at least
``BUDGET_STEPS`` (3,000) steps times that share: the budget's stride ramps up over a run's first steps (``t // 64``),
and the mean is the steady state's. What the ramp cost is reported
apart: the self-time of those first steps above the steady mean, once per run, in ms.

``--block N`` alternates the other configurations' copies in turns of N steps (default 1: step by step).

    python -m benchmarks.guard_overhead [--steps 300] [--breakdown] [--default-only] [--budget-only] [--block 25]
                                        [--model mlp|cnn] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

import trainguard
from trainguard.adapters.torch import collect, record
from trainguard.core.budget import DEFAULT_CAP, DEFAULT_SHARE, RAMP_STEPS

clock = time.thread_time
TARGET = 0.02  # self-time / step at the default preset


def mlp() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    return model, torch.randn(128, 784), torch.randint(0, 10, (128,))


def cnn() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 8 * 8, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 10))
    return model, torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))


MODELS: dict[str, tuple[Callable, Callable, float]] = {  # name: (build, optimizer, share of --steps)
    "mlp 784-512-512-10, batch 128, SGD momentum": (
        mlp, lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9), 1.0),
    "cnn 3x32x32, batch 64, Adam": (cnn, lambda p: torch.optim.Adam(p, lr=1e-3), 0.3),
}
# (preset, policy, with a run log, fetch_every, budget); "safe" is the default policy, "observe" only measures and
# detects; fetch_every None is the default (every step on CPU), 25 batches the host-side work as on GPU; budget:
# Guard(budget=...), the default DEFAULT_SHARE (trainguard.core.budget), None every step in full.
CONFIGS = [("standard", "observe", False, None, DEFAULT_SHARE), ("standard", "safe", False, None, DEFAULT_SHARE),
           ("standard", "observe", False, None, None), ("standard", "safe", False, None, None),
           ("standard", "safe", True, None, None), ("standard", "observe", False, 25, None),
           ("economy", "observe", False, None, None), ("full", "observe", False, None, None)]
BUDGET_BLOCK = 500  # a budgeted copy's turn, in steps
BUDGET_STEPS = 3000  # its timed steps at least (times the model's share): ~100 full steps at a stride of 32
RAMP = RAMP_STEPS * DEFAULT_CAP  # the steps over which the budget's stride ramps up


class OptimizerClock:
    """Accumulates the time spent inside ``optimizer.step()``, all of it (its profiling context and step hooks
    included), by wrapping the instance's ``step``; the guard calls ``self.optimizer.step()``, so it goes
    through the wrapper."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.total = 0.0
        step = optimizer.step

        def timed_step(*args, **kwargs):
            start = clock()
            try:
                return step(*args, **kwargs)
            finally:
                self.total += clock() - start

        optimizer.step = timed_step  # type: ignore[method-assign]


class PartClocks:
    """Accumulates the CPU time of named parts of the guard within one step, by wrapping the callables the guard
    reaches them through (a module's function, a class's method, an instance's method); ``restore()`` undoes it."""

    def __init__(self, targets: dict[str, tuple[Any, str]]) -> None:
        self.totals = dict.fromkeys(targets, 0.0)
        self._restore: list[tuple[Any, str, Any]] = []
        for part, (owner, attribute) in targets.items():
            original = getattr(owner, attribute)
            self._restore.append((owner, attribute, owner.__dict__.get(attribute)))
            setattr(owner, attribute, self._timed(part, original))

    def _timed(self, part: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            start = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                self.totals[part] += clock() - start
        return timed

    def take(self) -> dict[str, float]:
        taken, self.totals = self.totals, dict.fromkeys(self.totals, 0.0)
        return taken

    def restore(self) -> None:
        for owner, attribute, original in reversed(self._restore):
            if original is None:
                delattr(owner, attribute)
            else:
                setattr(owner, attribute, original)


def measure(build: Callable, make_optimizer: Callable, preset: str, policy: str, steps: int, warmup: int,
            log: Path | None, fetch_every: int | None, breakdown: bool = False,
            budget: float | None = None, block: int = 1) -> dict[str, Any]:
    torch.manual_seed(0)
    bare, x, y = build()
    torch.manual_seed(0)
    guarded, _, _ = build()
    bare_opt, guarded_opt = make_optimizer(bare.parameters()), make_optimizer(guarded.parameters())
    guard = trainguard.Guard(guarded, guarded_opt, policy=policy, preset=preset, log=log, fetch_every=fetch_every,
                             budget=budget)
    optimizer_clock = OptimizerClock(guarded_opt)
    probe_clock = PartClocks({"probe": (guard._measure.probe, "_record")})  # the sampled forwards' hook
    timed_parts = {"norm pass": (collect, "step_vector"), "session.observe": (guard.session, "observe"),
                   "session.observe_light": (guard.session, "observe_light"),
                   "StepStats": (record.PendingStep, "build")}
    if guard._repairer is not None:  # the policy's decision before the update (safe: skip or clip)
        timed_parts["repair decision"] = (guard._repairer, "before_update")
    parts = PartClocks(timed_parts) if breakdown else None
    loss_fn = nn.functional.cross_entropy

    def bare_step() -> float:
        start = clock()
        bare_opt.zero_grad()
        loss_fn(bare(x), y).backward()
        bare_opt.step()
        return clock() - start

    def guarded_step() -> tuple[float, float]:
        probe_clock.take()
        start = clock()
        guarded_opt.zero_grad()
        loss = loss_fn(guarded(x), y)
        loss.backward()
        optimizer_clock.total = 0.0
        inside = clock()
        guard.step(loss, batch_size=len(x), inputs=x, targets=y)
        end = clock()
        return end - start, (end - inside) - optimizer_clock.total + probe_clock.totals["probe"]

    bare_times, guarded_times, self_times, sampled, warmup_self = [], [], [], [], []
    part_times: list[dict[str, float]] = []

    def guarded_steps(n: int) -> list[tuple[float, float, bool, dict[str, float]]]:
        out = []
        for _ in range(n):
            layers_due = guard._layers_due  # the coming step samples per-layer statistics
            g, s = guarded_step()
            taken = {}
            if parts is not None:
                taken = dict(parts.take(), **{"activation probe": probe_clock.totals["probe"]})
            out.append((g, s, layers_due, taken))
        return out

    rounds = warmup + steps
    for first in range(0, rounds, block):  # block 1: bare and guarded alternate step by step
        n = min(block, rounds - first)
        if (first // block) % 2:
            bares = [bare_step() for _ in range(n)]
            turn = guarded_steps(n)
        else:
            turn = guarded_steps(n)
            bares = [bare_step() for _ in range(n)]
        for i, b, (g, s, layers_due, taken) in zip(range(first, first + n), bares, turn):
            if i < warmup:
                warmup_self.append(s)
                continue
            bare_times.append(b)
            guarded_times.append(g)
            self_times.append(s)
            sampled.append(layers_due)
            if parts is not None:
                part_times.append(dict(taken, adapter=s - sum(taken.values())))
    guard.close()
    probe_clock.restore()
    if parts is not None:
        parts.restore()
    bare_median = statistics.median(bare_times)
    guarded_median = statistics.median(guarded_times)
    result: dict[str, Any] = {
        "bare_median_ms": 1e3 * bare_median,
        "guarded_median_ms": 1e3 * guarded_median,
        "self_mean_us": 1e6 * statistics.fmean(self_times),
        "self_median_us": 1e6 * statistics.median(self_times),
        "self_share": statistics.fmean(self_times) / bare_median,
        "ab_share": (statistics.fmean(guarded_times) - statistics.fmean(bare_times)) / statistics.fmean(bare_times),
        "findings": len(guard.findings),
    }
    if budget is not None:  # the ramp's one-off cost: its steps' self-time above the steady mean
        ramp = warmup_self[:min(RAMP, len(warmup_self))]
        result["ramp_ms"] = 1e3 * (sum(ramp) - len(ramp) * statistics.fmean(self_times))
        result["stride"] = guard._budget.stride if guard._budget is not None else 1
    if part_times:
        every_step = [s for s, due in zip(self_times, sampled) if not due]
        result["every_step_mean_us"] = 1e6 * statistics.fmean(every_step)
        result["sampled_add_us"] = result["self_mean_us"] - result["every_step_mean_us"]
        result["parts_median_us"] = {part: 1e6 * statistics.median(t[part] for t in part_times)
                                     for part in part_times[0]}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=250, help="timed MLP steps per configuration (default 250)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--breakdown", action="store_true", help="also split the self-time into its parts")
    parser.add_argument("--default-only", action="store_true",
                        help="only the default preset without a log (standard; observe and safe; budget on and off)")
    parser.add_argument("--block", type=int, default=1,
                        help="steps per turn of each copy (default 1: bare and guarded alternate step by step; the "
                             "default guard's rows take turns of 500: its budget times the interval between its steps)")
    parser.add_argument("--budget-only", action="store_true", help="only the configurations with the default budget")
    parser.add_argument("--model", choices=("mlp", "cnn"), help="only this model (default: both)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = []
    print(f"torch {torch.__version__}, 1 thread, CPU time; self = inside guard.step minus optimizer.step; "
          f"self share = mean self / bare median step; A/B = (guarded - bare) / bare, mean step times")
    print(f"{'model':44} {'preset policy':32} {'bare ms':>8} {'guarded ms':>10} {'self us mean/med':>17} "
          f"{'self share':>10} {'A/B':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for model_name, (build, make_optimizer, share) in MODELS.items():
            if args.model and not model_name.startswith(args.model):
                continue
            for preset, policy, with_log, fetch_every, budget in CONFIGS:
                if args.default_only and (preset != "standard" or with_log or fetch_every):
                    continue
                if args.budget_only and budget is None:
                    continue
                log = Path(tmp) / f"{preset}-{policy}.jsonl" if with_log else None
                steps, warmup, block = args.steps, args.warmup, args.block
                if budget is not None:  # past the ramp, in long turns, long enough for its sparse full steps
                    steps, warmup, block = (max(steps, BUDGET_STEPS), max(warmup, int((RAMP + 50) * share)),
                                            max(block, BUDGET_BLOCK))
                r = measure(build, make_optimizer, preset, policy, max(20, int(steps * share)), warmup,
                            log, fetch_every, args.breakdown, budget, block)
                r.update(model=model_name, preset=preset, policy=policy, log=with_log, fetch_every=fetch_every,
                         budget=budget, block=block)
                results.append(r)
                label = f"{preset} {policy}" + (" +log" if with_log else "") + (
                    f" fetch/{fetch_every}" if fetch_every else "") + (" every step" if budget is None else "")
                print(f"{model_name:44} {label:32} {r['bare_median_ms']:8.2f} {r['guarded_median_ms']:10.2f} "
                      f"{r['self_mean_us']:8.0f} / {r['self_median_us']:<6.0f} {100 * r['self_share']:9.2f}% "
                      f"{100 * r['ab_share']:6.2f}%" + (f"   stride {r['stride']}, ramp {r['ramp_ms']:.0f} ms once"
                                                         if budget is not None else ""), flush=True)
                if "parts_median_us" in r:
                    print("    self-time parts, median us a step: " + ", ".join(
                        f"{part} {value:.0f}" for part, value in r["parts_median_us"].items()), flush=True)
                    print(f"    self-time mean: {r['every_step_mean_us']:.0f} us on an every-step-only step, "
                          f"+{r['sampled_add_us']:.0f} us a step from the sampled steps", flush=True)
    default = [r for r in results if r["preset"] == "standard" and not r["log"] and not r["fetch_every"]
               and r["budget"] == DEFAULT_SHARE]
    if default:
        worst = max(r["self_share"] for r in default)
        print(f"default guard (standard, observe or safe, budget {DEFAULT_SHARE}, no log): worst self-time share "
              f"{100 * worst:.2f}% (target <= {100 * TARGET:.0f}%): {'met' if worst <= TARGET else 'NOT met'}")
    every = [r for r in results if r["preset"] == "standard" and not r["log"] and not r["fetch_every"]
             and r["budget"] is None]
    if every:
        worst = max(r["self_share"] for r in every)
        print(f"every step measured (budget=None): worst self-time share {100 * worst:.2f}%")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
