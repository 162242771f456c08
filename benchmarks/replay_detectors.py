"""Replays the corpus' cached run logs through the detectors, offline: which detector raises what on each case,
without training anything again (the detectors are pure functions of the step statistics a run log stores).

    python -m benchmarks.replay_detectors [--cache-dir runs/corpus] [--part dev] [--case NAME ...] [--info]
    python -m benchmarks.replay_detectors --synthetic 600 [--seed 0]

Per case and run log it prints the findings at warning or above (``--info``: every finding), then the totals the
benchmark reports for the live guard: faulty runs detected, fixed twins flagged, healthy runs flagged, and the
healthy steps' false-alarm rate (findings >= warning per 100k steps; docs/severity.md). The replay runs the
detectors the guard runs (``default_detectors()``) on the statistics the guard logged: a run logged with a
sampling preset misses some steps' layer statistics, as the live guard did.

``--synthetic N`` instead draws N runs from each of the property tests' healthy generators
(``tests/core/test_detectors_healthy_property.py``: smooth decreasing losses, and heavy-tailed ones with bad
batches, curriculum switches and warm restarts), with numpy's generator seeded ``--seed``, over the same ranges
as the tests' strategies, and prints their symptom findings >= warning per 100k steps.
"""
from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np

from benchmarks.corpus.registry import discover, in_part
from trainguard.core.detector import replay
from trainguard.core.detectors import default_detectors
from trainguard.core.findings import Severity
from trainguard.core.monitor import Monitor
from trainguard.io.runlog import read_runlog

__all__ = ["replay_log", "main"]

REPO = Path(__file__).resolve().parent.parent
VARIANTS = {"faulty": ("observe", "fixed_observe"), "healthy": ("observe",)}


def replay_log(path: Path) -> tuple[int, list]:
    """(steps, findings) of the default detectors over one run log."""
    monitor = Monitor()
    steps = 0
    for stats in read_runlog(path).steps:
        monitor.observe(stats)
        steps += 1
    return steps, monitor.findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", default="runs/corpus")
    parser.add_argument("--part", default="dev", choices=("dev",))  # the held-out part is never replayed to tune
    parser.add_argument("--case", nargs="*", default=None)
    parser.add_argument("--info", action="store_true", help="print the findings at info too")
    parser.add_argument("--synthetic", type=int, metavar="N", help="draw N runs of each healthy generator instead")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.synthetic:
        return synthetic(args.synthetic, args.seed)
    cache = REPO / args.cache_dir
    flagged: dict[str, list[bool]] = collections.defaultdict(list)
    steps_of: dict[str, int] = collections.Counter()  # healthy / fixed twin -> steps replayed
    loud_of: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for case in discover():
        if not in_part(case.name, args.part) or (args.case and case.name not in args.case):
            continue
        for variant in VARIANTS[case.kind]:
            logs = sorted((cache / case.name / variant).glob("*.jsonl"))
            if not logs:
                print(f"{case.name}/{variant}: no run log")
                continue
            loud_any = False
            for log in logs:
                steps, findings = replay_log(log)
                loud = [f for f in findings if f.severity >= Severity.WARNING]
                loud_any = loud_any or bool(loud)
                if case.kind == "healthy" or variant == "fixed_observe":
                    kind = "healthy" if case.kind == "healthy" else "fixed twin"
                    steps_of[kind] += steps
                    loud_of[kind].update(f.code for f in loud)
                shown = findings if args.info else loud
                print(f"{case.kind[0]} {case.name}/{variant}/{log.name}: {steps} steps, {len(loud)} >= warning")
                for finding in shown:
                    print(f"    {finding.severity.name:7} {finding.code:20} step {finding.step:5}  "
                          f"{finding.message[:150]}")
            key = {"observe": f"{case.kind} flagged", "fixed_observe": "fixed twins flagged"}[variant]
            flagged[key].append(loud_any)
    print()
    for key, marks in flagged.items():
        print(f"{key}: {sum(marks)}/{len(marks)}")
    for kind, steps in steps_of.items():
        total = sum(loud_of[kind].values())
        rate = {code: round(n * 1e5 / steps, 1) for code, n in loud_of[kind].items()}
        print(f"{kind} runs: {steps} steps, {total} findings >= warning ({total * 1e5 / steps:.1f} per 100k steps): "
              f"{rate}")
    return 0


def synthetic(draws: int, seed: int) -> int:
    sys.path.insert(0, str(REPO / "tests" / "core"))
    from test_detectors_healthy_property import SYMPTOMS, healthy_stream, heavy_tailed_stream

    rng = np.random.default_rng(seed)

    def base() -> dict:  # the ranges of the tests' ``healthy_runs`` strategy
        return dict(seed=int(rng.integers(0, 2**32 - 1)), steps=int(rng.integers(150, 1501)),
                    shape=str(rng.choice(["exponential", "power_law", "floor"])),
                    start_loss=float(rng.uniform(0.05, 20.0)), decay=float(rng.uniform(3.0, 1000.0)),
                    exponent=float(rng.uniform(0.3, 1.5)), noise=float(rng.uniform(0.0, 0.3)),
                    grad_noise=float(rng.uniform(0.0, 0.3)), warmup=float(rng.uniform(0.0, 0.1)),
                    cosine=bool(rng.integers(0, 2)), bumps=int(rng.integers(0, 4)),
                    layer_every=int(rng.choice([0, 1, 25])))

    def heavy() -> dict:  # the ranges of ``heavy_tailed_runs``
        return dict(base=base(), bad_batches=0.0 if rng.uniform() < 0.5 else float(rng.uniform(0.1, 0.3)),
                    bad_factor=float(rng.uniform(2.0, 8.0)),
                    switch=None if rng.uniform() < 0.5 else float(rng.uniform(0.3, 0.8)),
                    switch_jump=float(rng.uniform(2.0, 50.0)), restarts=int(rng.integers(0, 4)))

    for name, draw, stream_of in (("smooth", base, healthy_stream), ("heavy-tailed", heavy, heavy_tailed_stream)):
        steps, loud = 0, collections.Counter()
        for _ in range(draws):
            stream = stream_of(draw())
            steps += len(stream)
            loud.update(f.code for f in replay(default_detectors(), stream)[0]
                        if f.severity >= Severity.WARNING and f.code in SYMPTOMS)
        total = sum(loud.values())
        print(f"{name}: {draws} runs, {steps} steps, {total} symptom findings >= warning "
              f"({total * 1e5 / steps:.1f} per 100k steps) {dict(loud)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
