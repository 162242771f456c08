"""The doctor's false alarms on coarse logs: every healthy native log and fixed twin of the corpus, as logged and as
coarser loggers would have written it (means of k rows as HF/Keras log, every k-th row as Lightning samples, and
the first 30% / 50% of the run: a run stopped early), counted per analysis at warning or above.

    python -m benchmarks.relog_doctor [--cache-dir runs/corpus] [--part dev|holdout|all] [--show]

Reads the native logs the diagnosis benchmark cached (``python -m benchmarks.diagnosis`` first); runs nothing.
"""
from __future__ import annotations

import argparse
import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.corpus.registry import discover, in_part
from benchmarks.corpus.run_one import native_log
from trainguard.core.findings import Severity
from trainguard.doctor import read_run
from trainguard.doctor.diagnose import diagnose_run
from trainguard.doctor.series import RunSeries

MIN_ROWS = 8


def _rows(series: RunSeries, index: np.ndarray, loss: np.ndarray, label: str) -> RunSeries:
    def pick(a):
        return None if a is None else a[index]

    keep_eval = None if series.eval_step is None else series.eval_step <= series.step[index[-1]]
    return dataclasses.replace(
        series, format=f"{series.format}/{label}", step=series.step[index], loss=loss, lr=pick(series.lr),
        grad_norm=pick(series.grad_norm), batch_size=pick(series.batch_size), epoch=pick(series.epoch),
        eval_step=None if keep_eval is None else series.eval_step[keep_eval],
        eval_loss=None if keep_eval is None else series.eval_loss[keep_eval],
        eval_metrics={} if keep_eval is None else {k: v[keep_eval] for k, v in series.eval_metrics.items()},
        present={name: mask[index] for name, mask in series.present.items()})


def coarse(series: RunSeries, k: int, mean: bool) -> RunSeries | None:
    """One row per ``k``: their mean (a logger that averages) or the last of them (one that samples)."""
    n = len(series) // k
    if n < MIN_ROWS:
        return None
    index = np.arange(n) * k + k - 1
    loss = series.loss[: n * k].reshape(n, k).mean(axis=1) if mean else series.loss[index]
    return _rows(series, index, loss, f"{'mean' if mean else 'every'}{k}")


def truncated(series: RunSeries, fraction: float) -> RunSeries | None:
    n = int(len(series) * fraction)
    if n < 10:
        return None
    index = np.arange(n)
    return _rows(series, index, series.loss[:n], f"first{int(fraction * 100)}%")


def versions(series: RunSeries) -> list[tuple[str, RunSeries]]:
    out = [("as logged", series)]
    out += [(s.format, s) for k in (5, 10, 25, 50, 100) for mean in (True, False)
            if (s := coarse(series, k, mean)) is not None]
    for fraction in (0.3, 0.5):
        head = truncated(series, fraction)
        if head is not None:
            out.append((head.format, head))
            out += [(s.format, s) for k in (10, 25) if (s := coarse(head, k, True)) is not None]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/corpus"))
    parser.add_argument("--part", choices=("dev", "holdout", "all"), default="dev")
    parser.add_argument("--show", action="store_true", help="print each warned log")
    args = parser.parse_args(argv)
    table: dict[tuple[str, str], Counter] = {}
    per_analysis: Counter = Counter()
    for case in discover():
        if not in_part(case.name, args.part):
            continue
        variant = "observe" if case.kind == "healthy" else "fixed_observe"
        outdir = args.cache_dir / case.name / variant
        path = native_log(outdir) if outdir.is_dir() else None
        if path is None:
            continue
        for label, series in versions(read_run(path)):
            with np.errstate(all="ignore"):
                findings, _ = diagnose_run(series)
            warned = {f.code for f in findings if f.severity >= Severity.WARNING and f.code != "parse"}
            key = ("healthy" if case.kind == "healthy" else "fixed twins",
                   "as logged" if label == "as logged" else "re-logged")
            row = table.setdefault(key, Counter())
            row["logs"] += 1
            row["rows"] += len(series)
            row["warned"] += bool(warned)
            per_analysis.update(warned)
            if warned and args.show:
                print(f"  {case.name} {label}: {', '.join(sorted(warned))}")
    print(f"{'set':12s} {'':>9s} {'logs':>5s} {'rows':>8s} {'warned':>6s}")
    for (kind, how), row in sorted(table.items()):
        print(f"{kind:12s} {how:>9s} {row['logs']:5d} {row['rows']:8d} {row['warned']:6d}")
    print("warnings per analysis:", dict(per_analysis) or "none")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
