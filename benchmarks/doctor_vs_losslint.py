"""The doctor against losslint (PyPI; the ``bench`` extra) on the same generated logs: healthy runs of many
shapes, and runs with one planted pathology each. For each tool: healthy runs flagged (a finding of warning or
above: a false alarm), sick runs caught (its pathology reported at warning or above), causes named (losslint has
none), and the time to check the whole directory.

    python -m benchmarks.doctor_vs_losslint [--seeds N]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.doctor_common import measure, python_cmd, synth

__all__ = ["main", "build"]

_SERIOUS = {"warning", "error", "critical"}
_ANY = _SERIOUS | {"info"}
# The losslint check that corresponds to each planted pathology (None: it has no such check).
LOSSLINT_CHECK = {"periodic_spike": "loss_spike", "loss_spike": "loss_spike", "lr_too_high": "divergence",
                  "adam_epsilon": "divergence", "non_finite": "nan_inf", "oscillation": None,
                  "plateau": "stagnation", "overfitting": "overfit_onset"}


def build(directory: Path, seeds: int) -> dict[str, tuple[str, str] | None]:
    """Writes the logs; returns file name -> (finding code, cause) expected, None for healthy."""
    gen = synth()
    expected: dict[str, tuple[str, str] | None] = {}
    for seed in range(seeds * 3):
        rng = np.random.default_rng(seed)
        run = gen.healthy(seed, int(rng.choice([1000, 3000, 10000])), log_every=int(rng.choice([1, 10])))
        name = f"healthy_{seed}.csv"
        gen.write_csv(run, directory / name)
        expected[name] = None
    for kind in gen.SICK:
        for seed in range(seeds):
            run = gen.sick(kind, seed, steps=3000)
            name = f"{kind}_{seed}.csv"
            gen.write_csv(run, directory / name)
            expected[name] = run["expect"]
    return expected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    losslint = shutil.which("losslint", path=str(Path(sys.executable).parent)) or shutil.which("losslint")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        expected = build(directory, args.seeds)
        wall, rss, _, out, cpu = measure(python_cmd("-m", "trainguard.cli", "doctor", str(directory), "--json"))
        doctor = {Path(r["path"]).name: [(f["code"], f["severity"], f["cause"]) for f in r["findings"]]
                  for r in json.loads(out)["runs"]}
        print(f"{len(expected)} logs ({sum(v is None for v in expected.values())} healthy)")
        _report("trainguard doctor", wall, cpu, rss, expected,
                lambda name, kind, levels=_SERIOUS: _doctor_hit(doctor.get(name, []), expected[name], levels),
                lambda name: [c for c, s, _ in doctor.get(name, []) if s in _SERIOUS],
                causes=lambda name: _doctor_cause(doctor.get(name, []), expected[name]))
        if not losslint:
            print("losslint not installed (pip install -e '.[bench]'): no comparison")
            return 0
        wall, rss, _, out, cpu = measure([losslint, "check", str(directory), "--format", "json"])
        lint: dict[str, list[tuple[str, str]]] = {}
        for f in json.loads(out)["findings"]:
            lint.setdefault(Path(f["source"]).name, []).append((f["check"], f["severity"]))
        _report("losslint", wall, cpu, rss, expected,
                lambda name, kind, levels=_SERIOUS: any(c == LOSSLINT_CHECK[kind] and s in levels
                                                        for c, s in lint.get(name, [])),
                lambda name: [c for c, s in lint.get(name, []) if s in _SERIOUS], causes=None)
    return 0


def _doctor_hit(findings, expect, levels) -> bool:
    return any(c == expect[0] and s in levels for c, s, _ in findings)


def _doctor_cause(findings, expect) -> bool:
    return any(c == expect[0] and k == expect[1] and s in _SERIOUS for c, s, k in findings)


def _report(tool, wall, cpu, rss, expected, hit, serious, causes) -> None:
    healthy = [n for n, e in expected.items() if e is None]
    false_alarms = [n for n in healthy if serious(n)]
    print(f"\n{tool}: wall {wall:.2f} s, CPU {cpu:.2f} s, max RSS {rss:.0f} MB")
    print(f"  healthy runs flagged (warning+): {len(false_alarms)} of {len(healthy)}"
          + (f" {sorted(false_alarms)[:5]}" if false_alarms else ""))
    by_kind: dict[str, list[str]] = {}
    for name, e in expected.items():
        if e is not None:
            by_kind.setdefault(name.rsplit("_", 1)[0], []).append(name)
    for kind, names in by_kind.items():
        caught = sum(hit(n, kind) for n in names)
        reported = sum(hit(n, kind, _ANY) for n in names)
        line = f"  {kind:15s} caught {caught}/{len(names)} (reported at any severity {reported}/{len(names)})"
        if causes is not None:
            line += f", right cause {sum(causes(n) for n in names)}/{len(names)}"
        print(line)


if __name__ == "__main__":
    sys.exit(main())
