"""Runs every benchmark: ``python -m benchmarks.run`` (what ``make bench`` calls)."""
from __future__ import annotations

import importlib
import sys

# One module per benchmark, each with a ``main() -> int``.
BENCHMARKS = ["benchmarks.guard_overhead", "benchmarks.repair_overhead", "benchmarks.keras_overhead",
              "benchmarks.integration_overhead", "benchmarks.doctor_speed", "benchmarks.doctor_vs_losslint"]


def main() -> int:
    status = 0
    for name in BENCHMARKS:
        print(f"== {name}", flush=True)
        status |= importlib.import_module(name).main()
    return status


if __name__ == "__main__":
    sys.exit(main())
