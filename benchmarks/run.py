"""Runs every benchmark: ``python -m benchmarks.run`` (what ``make bench`` calls).

Each benchmark runs in a fresh interpreter: none inherits another's imports, threads or memory. Memory figures
need that: a child's peak RSS starts at its parent's RSS when it is forked, so a parent that had imported torch
and keras would inflate every measurement of the processes it starts.
"""
from __future__ import annotations

import subprocess
import sys

# One module per benchmark, each runnable as ``python -m MODULE [ARGS]``.
BENCHMARKS = ["benchmarks.guard_overhead", "benchmarks.repair_overhead", "benchmarks.keras_overhead",
              "benchmarks.integration_overhead", "benchmarks.doctor_speed", "benchmarks.doctor_vs_losslint",
              "benchmarks.diagnosis --part all"]


def main() -> int:
    status = 0
    for name in BENCHMARKS:
        print(f"== {name}", flush=True)
        status |= subprocess.run([sys.executable, "-m", *name.split()]).returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
