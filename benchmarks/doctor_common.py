"""Shared helpers of the doctor benchmarks: run a command in a child process and measure its wall time and
peak memory (max RSS from ``wait4``), and import the log generators the doctor's tests use."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["measure", "synth", "ROOT", "python_cmd"]

ROOT = Path(__file__).resolve().parent.parent


def synth():
    """The generators of tests/doctor/doctor_synth.py."""
    sys.path.insert(0, str(ROOT / "tests" / "doctor"))
    import doctor_synth

    return doctor_synth


def python_cmd(*args: str) -> list[str]:
    return [sys.executable, *args]


def measure(cmd: list[str]) -> tuple[float, float, int, bytes, float]:
    """(wall seconds, max RSS in MB, exit code, stdout, CPU seconds) of one run of ``cmd``. On a shared
    machine the CPU time (user + system) is what the wall time would be on an idle one."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return (time.perf_counter() - start, usage.ru_maxrss / 1024, proc.returncode, out,
            usage.ru_utime + usage.ru_stime)
