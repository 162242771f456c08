"""Runs one corpus case once, in this (fresh) interpreter, and writes what the benchmark scores to
``OUTDIR/result.json``:

    python -m benchmarks.corpus.run_one CASE_FILE --variant observe --outdir runs/corpus/NAME/observe

``benchmarks.diagnosis`` starts one such process per run, so no run inherits another's imports, seeds, threads or
Keras state, and a run that hangs or crashes costs that run only. The variants:

| variant | policy | program |
| --- | --- | --- |
| ``observe`` | observe | the case (faulty: the bug) |
| ``auto`` | auto | the case |
| ``unguarded`` | none | the case (healthy: the reference ``auto`` must equal bitwise) |
| ``fixed`` | none | the fixed twin (faulty: the reference final loss) |
| ``fixed_observe`` | observe | the fixed twin (its findings are false alarms) |
| ``peer_stabilityguard``, ``peer_arc_vigil`` | that peer, live | the case (``--peers``, PyTorch loops) |

What is read after the run: every run log ``OUTDIR/*.jsonl`` (findings, actions and the live diagnosis: the log's
``diagnosis`` record when the guard wrote one, else ``trainguard.diagnosis.diagnose_log`` on the log), and the
native log (``trainer_state.json``, Lightning's ``metrics.csv``, Keras' ``training.csv`` or the plain loop's
``metrics.csv``) through ``trainguard doctor``'s API, the same code as ``trainguard doctor FILE --json``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

__all__ = ["VARIANTS", "PEER_VARIANTS", "RESULT_NAME", "RECORD_VERSION", "run_case", "analyse_outdir", "native_log",
           "main"]

# variant -> (policy, fixed)
VARIANTS: dict[str, tuple[str | None, bool]] = {
    "observe": ("observe", False), "auto": ("auto", False), "unguarded": (None, False),
    "fixed": (None, True), "fixed_observe": ("observe", True)}
# A live PyPI peer in the guard's place (benchmarks/corpus/peers.py; PyTorch-loop cases only): variant -> peer.
PEER_VARIANTS = {"peer_stabilityguard": "stabilityguard", "peer_arc_vigil": "arc-vigil"}
RESULT_NAME = "result.json"
# The result record's layout: the benchmark's cache holds records of this version only.
RECORD_VERSION = 2


def native_log(outdir: Path) -> Path | None:
    """The log the user's own tooling wrote, in the protocol's order of precedence: HF's ``trainer_state.json``
    (the newest checkpoint's when only checkpoints hold one), Lightning's CSV, Keras' CSVLogger, a plain CSV."""
    state = outdir / "trainer_state.json"
    if state.is_file():
        return state
    checkpoints = sorted(outdir.glob("checkpoint-*/trainer_state.json"),
                         key=lambda p: int(p.parent.name.split("-")[-1]) if p.parent.name.split("-")[-1].isdigit()
                         else -1)
    if checkpoints:
        return checkpoints[-1]
    lightning = sorted(outdir.glob("lightning_logs/version_*/metrics.csv"))
    if lightning:
        return lightning[-1]
    for name in ("training.csv", "metrics.csv"):
        if (outdir / name).is_file():
            return outdir / name
    return None


def _finite_or_none(value: Any) -> Any:
    return value if not isinstance(value, float) or math.isfinite(value) else None


def _cause_summary(cause: dict[str, Any], log_name: str) -> dict[str, Any]:
    evidence = cause.get("evidence") or {}
    out = {"code": str(cause.get("code", "none")), "confidence": float(cause.get("confidence", 0.0)),
           "log": log_name}
    if "candidates" in evidence:  # an "uncertain" diagnosis lists what it could not tell apart
        out["candidates"] = evidence["candidates"]
    return out


def _count(groups: list[dict[str, Any]], key: dict[str, Any], step: int) -> None:
    """Findings and actions grouped by what they are: a run with 2,000 identical spikes stays a small record."""
    for group in groups:
        if all(group[k] == v for k, v in key.items()):
            group["count"] += 1
            return
    groups.append({**key, "count": 1, "first_step": step})


def analyse_runlogs(outdir: Path) -> dict[str, Any]:
    from trainguard.diagnosis import diagnose_log
    from trainguard.io.runlog import RunLogError, read_runlog

    findings, actions, causes, logs, problems = [], [], [], [], []
    sources = set()
    for path in sorted(outdir.glob("*.jsonl")):
        try:
            log = read_runlog(path)
        except RunLogError as e:
            problems.append(str(e))
            continue
        logs.append(path.name)
        for f in log.findings:
            cause = f.evidence.get("cause")
            _count(findings, {"log": path.name, "code": f.code, "severity": f.severity.name.lower(),
                              "cause": cause if isinstance(cause, str) else None}, f.step)
        for a in log.actions:
            _count(actions, {"log": path.name, "kind": a.kind}, a.step)
        recorded = getattr(log, "diagnosis", None)
        if recorded is not None:
            sources.add("run log record")
            causes += [_cause_summary(c, path.name) for c in recorded]
        else:
            sources.add("diagnose_log")
            causes += [_cause_summary(c.to_dict(), path.name) for c in diagnose_log(log)]
    # Several guards (a GAN's two optimizers): one ranking over all of them, most confident first.
    causes.sort(key=lambda c: -c["confidence"])
    return {"logs": logs, "findings": findings, "actions": actions, "causes": causes,
            "diagnosis_source": sorted(sources), "problems": problems}


def analyse_native(outdir: Path) -> dict[str, Any]:
    import numpy as np

    from trainguard.doctor import diagnose_file

    path = native_log(outdir)
    if path is None:
        return {"path": None, "error": "no native log in the run's folder", "findings": []}
    diagnosis = diagnose_file(path)
    result = diagnosis.to_dict()
    if diagnosis.series is not None:  # how many rows the loss stayed finite: a calm phase a blow-up can follow
        finite = np.isfinite(diagnosis.series.loss)
        result["finite_rows_first"] = int(finite.size if finite.all() else np.argmin(finite))
    findings: list[dict[str, Any]] = []
    for f in result.get("findings", []):
        key = {"code": f["code"], "severity": f["severity"], "cause": f.get("cause", "none")}
        if isinstance(f.get("evidence", {}).get("confidence"), (int, float)):
            key["confidence"] = float(f["evidence"]["confidence"])
        _count(findings, key, f["step"])
    result["findings"] = findings
    result["path"] = str(path.relative_to(outdir))
    return result


def analyse_outdir(outdir: Path, guarded: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"doctor": analyse_native(outdir)}
    if guarded:
        out["live"] = analyse_runlogs(outdir)
    return out


def run_case(case_path: Path, variant: str, outdir: Path) -> dict[str, Any]:
    """Runs the case in this process and returns the result record (also on failure: status and error)."""
    from benchmarks.corpus.case import RunContext
    from benchmarks.corpus.registry import CaseFile, load_case
    from trainguard import TrainingStopped

    policy, fixed = VARIANTS.get(variant, (None, False))
    record: dict[str, Any] = {"case": case_path.stem, "variant": variant, "policy": policy, "fixed": fixed,
                              "status": "ok"}
    if variant in PEER_VARIANTS:
        from benchmarks.corpus.peers import LivePeerContext

        ctx: RunContext = LivePeerContext(outdir=outdir, peer=PEER_VARIANTS[variant])
    else:
        ctx = RunContext(outdir=outdir, policy=policy, fixed=fixed)
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        module = load_case(CaseFile(case_path.stem, case_path.parent.name, case_path))
        record["meta"] = dataclasses.asdict(module.CASE)
        outcome = module.run(ctx)
        record["outcome"] = {"final_loss": _finite_or_none(outcome.final_loss), "fingerprint": outcome.fingerprint,
                             "steps": outcome.steps, "stopped": outcome.stopped,
                             "extra": {k: _finite_or_none(v) for k, v in outcome.extra.items()
                                       if isinstance(v, (int, float, str, bool)) or v is None}}
        if outcome.stopped:
            record["status"] = "stopped"
    except TrainingStopped as e:  # the guard gave up: the run ended, and its logs are there to read
        record["status"] = "stopped"
        record["outcome"] = {"final_loss": None, "fingerprint": "", "steps": 0, "stopped": str(e), "extra": {}}
    except Exception as e:
        record["status"] = "failed"
        record["error"] = "".join(traceback.format_exception(type(e), e, e.__traceback__)[-6:])[-3000:]
    # Wall time depends on what else the machine runs; CPU time (one thread) much less: the test suite's fast
    # subset is chosen by it.
    record["seconds"] = round(time.perf_counter() - started, 2)
    record["cpu_s"] = round(time.process_time() - cpu_started, 2)
    if variant in PEER_VARIANTS:
        if record["status"] != "failed":
            record["peer"] = {"name": PEER_VARIANTS[variant], "flagged": ctx.flagged()}
        return record
    if record["status"] != "failed":
        try:
            record.update(analyse_outdir(outdir, guarded=policy is not None))
        except Exception:  # a trainguard bug in reading the logs is a finding of the benchmark, not its crash
            record["status"] = "failed"
            record["error"] = "analysis: " + traceback.format_exc()[-3000:]
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Runs one corpus case (see benchmarks.diagnosis).")
    parser.add_argument("case_file", type=Path)
    parser.add_argument("--variant", choices=sorted([*VARIANTS, *PEER_VARIANTS]), required=True)
    parser.add_argument("--outdir", type=Path, required=True)
    args = parser.parse_args(argv)
    if not args.case_file.is_file():
        print(f"run_one: {args.case_file}: no such case file", file=sys.stderr)
        return 2
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    args.outdir.mkdir(parents=True, exist_ok=True)
    record = run_case(args.case_file, args.variant, args.outdir)
    (args.outdir / RESULT_NAME).write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
