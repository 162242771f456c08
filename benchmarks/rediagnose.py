"""Re-diagnoses the cached corpus runs offline, with the diagnosis engine as it is now: seconds, not the minutes
of ``python -m benchmarks.diagnosis``. Dev part only (the held-out cases are never read).

    python -m benchmarks.rediagnose [--cache-dir runs/corpus] [--case NAME ...] [--replay] [--show]

For each faulty case's ``observe`` run: the live top cause (``diagnose_log`` on each run log, the most confident
over several) and the doctor's top cause on the native log, scored as the benchmark scores them (right,
confident and wrong, uncertain, signal in the log), and whether the live run is detected (a finding >= warning in
its run logs: ``!`` marks one that is not); for each healthy case, whether either names a cause and whether a
live finding >= warning flags it. ``--replay`` replays today's detectors over the logged statistics instead of
taking the logged findings (the findings a rerun would give, for detectors that read only the statistics).
``--show`` prints each run's ranked causes with their evidence.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.corpus.registry import discover, in_part
from benchmarks.corpus.run_one import RESULT_NAME, native_log
from benchmarks.diagnosis import CACHE_DIR, CONFIDENT, NOT_A_CAUSE, signal_in_log

__all__ = ["live_causes", "live_flagged", "doctor_causes", "main"]


def live_causes(outdir: Path, replay: bool = False) -> list[Any]:
    from trainguard.core.diagnosis import diagnose
    from trainguard.diagnosis import diagnose_log, framework_of
    from trainguard.io.runlog import RunLogError, read_runlog

    causes = []
    for path in sorted(outdir.glob("*.jsonl")):
        try:
            log = read_runlog(path)
        except RunLogError:
            continue
        causes += diagnose(log.steps, None, framework_of(log)) if replay else diagnose_log(log)
    return sorted(causes, key=lambda c: -c.confidence)


def live_flagged(outdir: Path, replay: bool = False) -> bool:
    """Whether a run log of ``outdir`` has a finding >= warning (with ``replay``: one today's detectors raise)."""
    from trainguard.core.detector import replay as replay_detector
    from trainguard.core.detectors import default_detectors
    from trainguard.core.findings import Severity
    from trainguard.io.runlog import RunLogError, read_runlog

    for path in sorted(outdir.glob("*.jsonl")):
        try:
            log = read_runlog(path)
        except RunLogError:
            continue
        steps = sorted(log.steps, key=lambda s: s.step)
        found = replay_detector(default_detectors(), steps)[0] if replay else log.findings
        if any(f.severity >= Severity.WARNING for f in found):
            return True
    return False


def doctor_causes(outdir: Path) -> tuple[list[Any], dict[str, Any], str | None]:
    """The doctor's ranked causes on the native log, what the log holds (``grad_norm``: a gradient-norm column,
    ``rows``: its rows, as :func:`benchmarks.diagnosis.doctor_view` says them), and any error."""
    from trainguard.doctor import diagnose_file

    path = native_log(outdir)
    if path is None:
        return [], {"grad_norm": False, "rows": 0}, "no native log"
    result = diagnose_file(path)
    if result.error:
        return [], {"grad_norm": False, "rows": 0}, result.error
    return result.causes, {"grad_norm": "grad_norm" in result.series.columns, "rows": len(result.series)}, None


def _top(causes: list[Any]) -> tuple[str, float]:
    return (causes[0].code, causes[0].confidence) if causes else ("none", 0.0)


def _cell(code: str, confidence: float, cause: str | None) -> str:
    mark = "" if cause is None else ("+" if code == cause else ("?" if code in NOT_A_CAUSE else "X"))
    return f"{mark}{code} {confidence:.2f}"


def _show(causes: list[Any]) -> None:
    def short(value: Any) -> Any:
        if isinstance(value, float):
            return round(value, 4) if math.isfinite(value) else str(value)
        if isinstance(value, dict):
            return {k: short(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [short(v) for v in value][:6]
        return value

    for c in causes:
        print(f"      {c.code} {c.confidence:.2f}: {c.message}")
        print(f"        {json.dumps(short(c.evidence), default=str)[:600]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rediagnose", description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    parser.add_argument("--case", nargs="+", default=[])
    parser.add_argument("--replay", action="store_true", help="replay today's detectors over the statistics")
    parser.add_argument("--show", action="store_true", help="print each run's causes with their evidence")
    parser.add_argument("--kind", choices=("faulty", "healthy", "both"), default="both")
    parser.add_argument("--fixed", action="store_true",
                        help="the faulty cases' fixed twins (fixed_observe), scored as healthy runs")
    args = parser.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    cases = [c for c in discover() if in_part(c.name, "dev") and (not args.case or c.name in args.case)
             and (args.kind == "both" or c.kind == args.kind) and (not args.fixed or c.kind == "faulty")]
    totals = {"faulty": 0, "live_detected": 0, "healthy_live_flagged": 0,
              "live_right": 0, "doctor_right": 0, "signal": 0, "doctor_right_signal": 0,
              "live_confident_wrong": 0, "doctor_confident_wrong": 0, "live_uncertain": 0, "doctor_uncertain": 0,
              "healthy": 0, "healthy_live_cause": 0, "healthy_doctor_cause": 0}
    for case in sorted(cases, key=lambda c: (c.kind, c.name)):
        outdir = args.cache_dir / case.name / ("fixed_observe" if args.fixed and case.kind == "faulty" else "observe")
        try:
            record = json.loads((outdir / RESULT_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            print(f"{case.name}: no cached observe run in {args.cache_dir}", file=sys.stderr)
            continue
        kind = "healthy" if args.fixed else case.kind
        cause = (record.get("meta") or {}).get("cause") if kind == "faulty" else None
        with np.errstate(all="ignore"):
            live = live_causes(outdir, args.replay)
            flagged = live_flagged(outdir, args.replay)
            doctor, log_holds, error = doctor_causes(outdir)
        (lc, lconf), (dc, dconf) = _top(live), _top(doctor)
        if kind == "faulty":
            signal = signal_in_log(cause, log_holds, (record.get("outcome") or {}).get("steps"))
            totals["faulty"] += 1
            totals["live_detected"] += flagged
            totals["signal"] += signal
            totals["live_right"] += lc == cause
            totals["doctor_right"] += dc == cause
            totals["doctor_right_signal"] += signal and dc == cause
            totals["live_confident_wrong"] += lc != cause and lc not in NOT_A_CAUSE and lconf >= CONFIDENT
            totals["doctor_confident_wrong"] += dc != cause and dc not in NOT_A_CAUSE and dconf >= CONFIDENT
            totals["live_uncertain"] += lc == "uncertain"
            totals["doctor_uncertain"] += dc == "uncertain"
            print(f"{case.name:44s}{' ' if flagged else '!'} {cause:26s} live {_cell(lc, lconf, cause):32s} doctor "
                  f"{_cell(dc, dconf, cause)}{'' if signal else ' *'}{f' [{error}]' if error else ''}")
        else:
            totals["healthy"] += 1
            totals["healthy_live_flagged"] += flagged
            totals["healthy_live_cause"] += lc != "none"
            totals["healthy_doctor_cause"] += dc != "none"
            if lc != "none" or dc != "none" or flagged or args.case:
                print(f"{case.name:44s}{'!' if flagged else ' '} {'healthy':26s} live {_cell(lc, lconf, None):32s} "
                      f"doctor "
                      f"{_cell(dc, dconf, None)}{f' [{error}]' if error else ''}")
        if args.show:
            print("    live:")
            _show(live)
            print("    doctor:")
            _show(doctor)
    t = totals
    print(f"faulty {t['faulty']}: live detected {t['live_detected']}, live right {t['live_right']}, "
          f"doctor right {t['doctor_right']} "
          f"({t['doctor_right_signal']}/{t['signal']} with the signal); confident-wrong live "
          f"{t['live_confident_wrong']} doctor {t['doctor_confident_wrong']}; uncertain live {t['live_uncertain']} "
          f"doctor {t['doctor_uncertain']}")
    print(f"healthy {t['healthy']}: flagged live {t['healthy_live_flagged']} (! marks them); a cause live "
          f"{t['healthy_live_cause']}, doctor {t['healthy_doctor_cause']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
