"""The doctor on a 1M-step CSV: wall time and peak memory of ``trainguard doctor FILE --json`` as a user runs
it (a fresh process: imports included). Targets: <= 2 s and <= 300 MB; the time judged is the process's CPU time,
which is its wall time on an idle machine (the wall time is printed too). losslint (the ``bench`` extra) runs on
the same file for comparison when it is installed.

    python -m benchmarks.doctor_speed [--steps N] [--repeat R]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.doctor_common import measure, python_cmd, synth

__all__ = ["main", "write_big_csv"]

TARGET_SECONDS = 2.0
TARGET_MB = 300.0


def write_big_csv(path: Path, steps: int) -> None:
    """A healthy run with periodic spikes at epoch ends, written fast with numpy."""
    run = synth().sick("periodic_spike", 0, steps=steps)
    with open(path, "w") as f:
        f.write("step,epoch,loss,lr,grad_norm,batch_size\n")
        np.savetxt(f, np.c_[run["step"], run["epoch"], run["loss"], run["lr"], run["grad_norm"], run["batch_size"]],
                   fmt=["%d", "%d", "%.6g", "%.6g", "%.6g", "%d"], delimiter=",")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.csv"
        write_big_csv(path, args.steps)
        print(f"{args.steps} steps, {path.stat().st_size / 1e6:.1f} MB of CSV")
        tools = {"trainguard doctor": python_cmd("-m", "trainguard.cli", "doctor", str(path), "--json")}
        losslint = shutil.which("losslint", path=str(Path(sys.executable).parent)) or shutil.which("losslint")
        if losslint:
            tools["losslint check"] = [losslint, "check", str(path), "--format", "json"]
        else:
            print("losslint not installed (pip install -e '.[bench]'): no comparison")
        status = 0
        for name, cmd in tools.items():
            runs = [measure(cmd) for _ in range(args.repeat)]
            times, rss, cpu = [r[0] for r in runs], [r[1] for r in runs], [r[4] for r in runs]
            codes = _codes(name, runs[-1][3])
            print(f"{name:18s} wall min {min(times):.2f} s, median {statistics.median(times):.2f} s; "
                  f"CPU min {min(cpu):.2f} s; max RSS {max(rss):.0f} MB; exit {runs[-1][2]}; findings: {codes}")
            if name == "trainguard doctor" and (min(cpu) > TARGET_SECONDS or max(rss) > TARGET_MB):
                print(f"  over target ({TARGET_SECONDS} s, {TARGET_MB} MB)")
                status = 1
    return status


def _codes(tool: str, stdout: bytes) -> list[str]:
    try:
        data = json.loads(stdout)
    except ValueError:
        return ["(no JSON)"]
    if tool.startswith("trainguard"):
        return [f"{f['code']}:{f['severity']}" for run in data["runs"] for f in run["findings"]]
    return [f"{f['check']}:{f['severity']}" for f in data.get("findings", [])]


if __name__ == "__main__":
    sys.exit(main())
