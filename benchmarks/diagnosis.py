"""The diagnosis benchmark: trainguard on the corpus of re-created public bugs and healthy recipes
(``benchmarks/corpus/``, docs/corpus.md), live and from the logs, scored per case and in total.

    python -m benchmarks.diagnosis [--part dev|holdout|all] [--case NAME ...] [--jobs N] [--json FILE]
                                   [--peers [PEER ...]] [--rerun] [--cached] [--show-cases]
                                   [--write-holdout] [--write-seconds]

Each run is a fresh ``python -m benchmarks.corpus.run_one`` process (one thread, ``KERAS_BACKEND=torch``), stopped
after ``--timeout`` seconds (120) and then reported as failed. A faulty case runs four times: ``observe`` (live
findings and diagnosis; its native log goes to the doctor), ``auto`` (final loss, actions, TrainingStopped), its
fixed twin unguarded (the reference final loss) and the fixed twin under ``observe`` (its findings are false
alarms). A healthy case runs three times: ``observe``, ``auto`` and unguarded.

Results are cached in ``runs/corpus/<case>/<variant>/result.json`` with the run's logs beside them. A cached run is
used again unless ``--rerun``, the case's file (or a helper module of its folder, or the corpus protocol) changed,
or, for a guarded run, trainguard's source changed since: a figure always describes the code in the tree.

Definitions (per case; the totals count cases):

- *detected*: a finding of warning or above (the doctor's ``parse`` findings are about the file, not the run).
- *live top cause*: the first cause of the run log's ``diagnosis`` record, else of ``diagnose_log`` on the log;
  with several run logs (two optimizers), the most confident cause over all of them; ``none`` when there is none.
- *doctor top cause*: the first of the doctor's ranked ``causes`` when its JSON carries them; otherwise the cause
  of its worst finding at warning or above (the earliest of those), ``none`` without one.
- *right*: the top cause is the case's cause. ``uncertain`` is never right and never confidently wrong.
- *confident and wrong*: the top cause is a cause code other than the case's, ``none`` and ``uncertain``, with
  confidence >= 0.6. The doctor's findings carry no confidence unless their evidence says one: a finding at
  warning or above that names a cause is an unhedged claim, and counts as confidence 1.
- *signal in the log*: see ``LOG_VISIBLE_CAUSES`` and :func:`signal_in_log`.
- *fixed twin flagged*: the fixed twin under ``observe`` has a live finding >= warning (and, for the doctor, its
  native log has one).
- *healthy flagged*: the healthy ``observe`` run has a live finding >= warning (doctor: on its native log).
- *acted on*: the healthy ``auto`` run logged an action, or its final parameters differ from the unguarded run's.
- *auto within 2x*: ``auto``'s final loss is finite and at most the fixed twin's plus the fixed twin's absolute
  value (2x for a positive loss), the measure of issue 16; a run the guard stopped is not within.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rich.markup import escape

from benchmarks.corpus.registry import (CORPUS_DIR, PARTS, CaseFile, declared_fields, discover, in_part,
                                       write_holdout)
from benchmarks.corpus.run_one import PEER_VARIANTS, RECORD_VERSION, RESULT_NAME, VARIANTS

__all__ = ["main", "VARIANTS_OF", "LOG_VISIBLE_CAUSES", "GRADIENT_CAUSES", "score_case", "totals", "run_cases",
           "CONFIDENT"]

REPO = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO / "runs" / "corpus"
VARIANTS_OF = {"faulty": ("observe", "auto", "fixed", "fixed_observe"), "healthy": ("observe", "auto", "unguarded")}
TIMEOUT_S = 120
CONFIDENT = 0.6
_SEVERITY = {"info": 10, "warning": 20, "error": 30, "critical": 40}
_WARNING = _SEVERITY["warning"]
NOT_A_CAUSE = {"none", "uncertain"}

# The faulty runs whose logs carry the signal: what a log of loss, learning rate and evaluation loss can show.
# - lr_too_high: divergence or oscillation, and whether it sets in as the LR rises (the lr column).
# - lr_too_low: a slow smooth decline or a plateau under a tiny LR (the lr column says how small).
# - bad_batch: isolated spikes that the loss returns from.
# - batch_size_dependent_loss: spikes once per epoch, at the epoch's last (partial) batch.
# - adam_epsilon: an abrupt blow-up after a long calm phase under a steady LR (a log whose loss is non-finite within
#   its first CALM_ROWS rows has no calm phase to show: an fp16 run whose eps rounded to 0 is NaN from step 1).
# - unscaled_data: a first loss orders of magnitude above what a trivial predictor reaches (issue 11, section 4).
# - overfitting: the evaluation loss rising while the training loss falls.
# Not in the set: bn_inference_mode, dead_relu, saturated_activation (their evidence is layer modes and activation
# statistics; the loss only shows a stall that any of them, or vanishing gradients, would give), and the
# gradient causes below unless the log has a gradient-norm column (HF's trainer_state.json has one).
LOG_VISIBLE_CAUSES = frozenset({"lr_too_high", "lr_too_low", "bad_batch", "batch_size_dependent_loss",
                                "adam_epsilon", "unscaled_data", "overfitting"})
GRADIENT_CAUSES = frozenset({"exploding_gradient", "vanishing_gradient"})
# A batch's own loss is what shows these two; a log of epoch means (Keras' CSVLogger) averages it away, so their
# signal needs a log with about one row per optimizer step (at least half as many rows as steps).
PER_STEP_CAUSES = frozenset({"bad_batch", "batch_size_dependent_loss"})
PER_STEP_ROWS = 0.5
CALM_ROWS = 8  # the doctor's own reading of a blow-up within its first 8 finite rows: too early to have a course


def signal_in_log(cause: str, doctor: dict[str, Any], steps: Any) -> bool:
    """Whether the native log can show ``cause`` at all (the denominator of the doctor's 'right' score)."""
    if cause in GRADIENT_CAUSES:
        return doctor["grad_norm"]
    if cause in PER_STEP_CAUSES:
        return isinstance(steps, int) and steps > 0 and doctor["rows"] >= PER_STEP_ROWS * steps
    if cause == "adam_epsilon" and doctor.get("finite_rows_first") is not None:
        return doctor["finite_rows_first"] >= CALM_ROWS
    return cause in LOG_VISIBLE_CAUSES


# -- running -------------------------------------------------------------------------------------------------------
def _hash_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(str(path.relative_to(REPO) if path.is_relative_to(REPO) else path).encode())
        try:
            h.update(path.read_bytes())
        except FileNotFoundError:  # a case removed while the benchmark runs: its run fails, the others go on
            h.update(b"(missing)")
    return h.hexdigest()[:16]


def _case_version(case: CaseFile) -> str:
    """The case, its folder's helper modules, the protocol and the record's layout: what an unguarded run's
    record depends on."""
    helpers = sorted(p for p in case.path.parent.glob("_*.py"))
    return f"r{RECORD_VERSION}:" + _hash_files([case.path, *helpers, CORPUS_DIR / "case.py"])


_TRAINGUARD_VERSION: str | None = None


def _trainguard_version() -> str:
    global _TRAINGUARD_VERSION
    if _TRAINGUARD_VERSION is None:
        _TRAINGUARD_VERSION = _hash_files(sorted((REPO / "trainguard").rglob("*.py")))
    return _TRAINGUARD_VERSION


def _version(case: CaseFile, variant: str) -> str:
    if variant in PEER_VARIANTS:  # a peer's run depends on the case and on the installed peer
        return _case_version(case) + "+" + variant
    guarded = VARIANTS[variant][0] is not None
    return _case_version(case) + ("+" + _trainguard_version() if guarded else "")


_RUNNING: set[subprocess.Popen] = set()  # the runs in flight, killed when the benchmark is interrupted


@dataclass
class Run:
    case: CaseFile
    variant: str
    folder: Path  # runs/corpus/<case>/<variant>

    @property
    def result_path(self) -> Path:
        return self.folder / RESULT_NAME


def cached(run: Run, any_trainguard: bool = False) -> dict[str, Any] | None:
    """The cached record if it describes the case and trainguard as they are (``any_trainguard``: whatever
    trainguard it ran with)."""
    try:
        record = json.loads(run.result_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    # A failed or timed-out run is tried again: it may have been the machine's load or an interruption.
    if record.get("status") not in ("ok", "stopped"):
        return None
    version, wanted = str(record.get("version")), _version(run.case, run.variant)
    if any_trainguard:
        version, wanted = version.split("+")[0], wanted.split("+")[0]
    return record if version == wanted else None


def execute(run: Run, timeout_s: float) -> dict[str, Any]:
    """One run in a fresh interpreter; its folder is replaced only when it has finished (a benchmark started
    alongside never reads a half-written run)."""
    version = _version(run.case, run.variant)
    partial = run.folder.with_name(f"{run.variant}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    env = {**os.environ, "KERAS_BACKEND": "torch", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONHASHSEED": "0", "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                                               os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "benchmarks.corpus.run_one", str(run.case.path), "--variant", run.variant,
               "--outdir", str(partial)]
    started = time.perf_counter()
    with open(partial / "output.log", "wb") as output:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # its own process group: killed with its children
        _RUNNING.add(process)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        finally:
            _RUNNING.discard(process)
    wall = round(time.perf_counter() - started, 2)
    try:
        record = json.loads((partial / RESULT_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        tail = (partial / "output.log").read_text(encoding="utf-8", errors="replace")[-2000:]
        timed_out = process.returncode == -signal.SIGKILL and wall >= timeout_s
        record = {"case": run.case.name, "variant": run.variant, "status": "timeout" if timed_out else "failed",
                  "error": f"no result after {wall:.0f} s" if timed_out
                  else f"exit {process.returncode}: {tail}"}
    record["version"] = version
    record["wall_s"] = wall
    (partial / RESULT_NAME).write_text(json.dumps(record, indent=1), encoding="utf-8")
    shutil.rmtree(run.folder, ignore_errors=True)
    partial.rename(run.folder)
    return record


def run_cases(cases: list[CaseFile], cache_dir: Path = CACHE_DIR, jobs: int = 2, rerun: bool = False,
              timeout_s: float = TIMEOUT_S, progress: Callable[[str], None] | None = None,
              variants_of: Callable[[CaseFile], tuple[str, ...]] = lambda case: VARIANTS_OF[case.kind],
              any_trainguard: bool = False) -> dict[str, dict[str, dict[str, Any]]]:
    """case name -> variant -> result record, running what the cache does not hold."""
    results: dict[str, dict[str, dict[str, Any]]] = {c.name: {} for c in cases}
    todo = []
    for case in cases:
        for variant in variants_of(case):
            run = Run(case, variant, cache_dir / case.name / variant)
            record = None if rerun else cached(run, any_trainguard)
            if record is None:
                todo.append(run)
            else:
                results[case.name][variant] = record
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        futures = {pool.submit(execute, run, timeout_s): run for run in todo}
        for done, future in enumerate(as_completed(futures), start=1):
            run = futures[future]
            record = future.result()
            results[run.case.name][run.variant] = record
            if progress:
                progress(f"[{done}/{len(todo)}] {run.case.name} {run.variant}: {record['status']} "
                         f"({record['wall_s']:.1f} s)")
    except BaseException:  # Ctrl-C: no run may outlive the benchmark
        pool.shutdown(wait=False, cancel_futures=True)
        for process in list(_RUNNING):
            os.killpg(process.pid, signal.SIGKILL)
        raise
    pool.shutdown()
    return results


# -- scoring ---------------------------------------------------------------------------------------------------------
def _serious(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in findings if _SEVERITY.get(f["severity"], 0) >= _WARNING and f["code"] != "parse"]


def live_view(record: dict[str, Any] | None) -> dict[str, Any]:
    """Detected, the worst live finding and the top cause of one guarded run."""
    if not record or record.get("status") not in ("ok", "stopped") or "live" not in record:
        return {"ran": False, "detected": False, "worst": None, "top": "none", "confidence": 0.0}
    live = record["live"]
    serious = _serious(live["findings"])
    worst = max(serious, key=lambda f: _SEVERITY[f["severity"]], default=None)
    top = live["causes"][0] if live["causes"] else {"code": "none", "confidence": 0.0}
    return {"ran": True, "detected": bool(serious), "worst": worst and f"{worst['code']} ({worst['severity']})",
            "top": top["code"], "confidence": float(top["confidence"]), "candidates": top.get("candidates"),
            "actions": sum(a["count"] for a in live["actions"])}


def doctor_view(record: dict[str, Any] | None) -> dict[str, Any]:
    """The same for the doctor on the run's native log."""
    doctor = (record or {}).get("doctor")
    if not doctor or doctor.get("error") or record.get("status") not in ("ok", "stopped"):
        return {"ran": False, "detected": False, "worst": None, "top": "none", "confidence": 0.0,
                "grad_norm": False, "rows": 0, "error": (doctor or {}).get("error") or (record or {}).get("status")}
    serious = _serious(doctor["findings"])
    worst = min(serious, key=lambda f: (-_SEVERITY[f["severity"]], f["first_step"]), default=None)
    if doctor.get("causes"):
        top, confidence = doctor["causes"][0]["code"], float(doctor["causes"][0].get("confidence", 1.0))
    elif worst is not None:
        top, confidence = worst.get("cause") or "none", float(worst.get("confidence", 1.0))
    else:
        top, confidence = "none", 0.0
    return {"ran": True, "detected": bool(serious), "worst": worst and f"{worst['code']} ({worst['severity']})",
            "top": top, "confidence": confidence, "grad_norm": "grad_norm" in doctor.get("columns", {}),
            "rows": int(doctor.get("steps") or 0), "finite_rows_first": doctor.get("finite_rows_first")}


def _right(view: dict[str, Any], cause: str) -> bool:
    return view["top"] == cause


def _confident_cause(view: dict[str, Any]) -> bool:
    """A cause named at confidence >= CONFIDENT: on a healthy run, a wrong diagnosis even without a warning."""
    return view["top"] not in NOT_A_CAUSE and view["confidence"] >= CONFIDENT


def _confident_wrong(view: dict[str, Any], cause: str) -> bool:
    return view["top"] != cause and view["top"] not in NOT_A_CAUSE and view["confidence"] >= CONFIDENT


def _final(record: dict[str, Any] | None) -> float | None:
    if not record or record.get("status") not in ("ok", "stopped"):
        return None
    value = (record.get("outcome") or {}).get("final_loss")
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def within_2x(auto_loss: float | None, fixed_loss: float | None) -> bool | None:
    """None when the fixed twin has no finite final loss to compare with."""
    if fixed_loss is None:
        return None
    return auto_loss is not None and auto_loss <= fixed_loss + abs(fixed_loss)


def score_case(case: CaseFile, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One row: what each measure says about this case."""
    meta = next((r["meta"] for r in runs.values() if r.get("meta")), {})
    failed = sorted(v for v, r in runs.items() if r.get("status") not in ("ok", "stopped"))
    row: dict[str, Any] = {"case": case.name, "kind": case.kind, "framework": meta.get("framework", "?"),
                           "held_out": case.held_out, "failed": failed,
                           "errors": {v: runs[v].get("error", "")[-300:] for v in failed},
                           "seconds": round(sum(r.get("wall_s", 0.0) for r in runs.values()), 1)}
    live, doctor = live_view(runs.get("observe")), doctor_view(runs.get("observe"))
    row["live"], row["doctor"] = live, doctor
    auto = live_view(runs.get("auto"))
    auto_record = runs.get("auto") or {}
    row["auto_actions"] = auto.get("actions", 0)
    row["auto_stopped"] = auto_record.get("status") == "stopped"
    if case.kind == "faulty":
        cause = meta.get("cause", "?")
        row["cause"] = cause
        steps = ((runs.get("observe") or {}).get("outcome") or {}).get("steps")
        row["signal_in_log"] = signal_in_log(cause, doctor, steps)
        row["live_right"], row["doctor_right"] = _right(live, cause), _right(doctor, cause)
        row["live_confident_wrong"] = _confident_wrong(live, cause)
        row["doctor_confident_wrong"] = _confident_wrong(doctor, cause)
        row["live_uncertain"] = live["top"] == "uncertain"
        fixed_live, fixed_doctor = live_view(runs.get("fixed_observe")), doctor_view(runs.get("fixed_observe"))
        row["fixed_live_flagged"], row["fixed_doctor_flagged"] = fixed_live["detected"], fixed_doctor["detected"]
        row["fixed_live_worst"], row["fixed_doctor_worst"] = fixed_live["worst"], fixed_doctor["worst"]
        row["auto_final_loss"], row["fixed_final_loss"] = _final(runs.get("auto")), _final(runs.get("fixed"))
        row["auto_within_2x"] = within_2x(row["auto_final_loss"], row["fixed_final_loss"])
    else:
        row["cause"] = None
        unguarded = (runs.get("unguarded") or {}).get("outcome") or {}
        auto_print = (auto_record.get("outcome") or {}).get("fingerprint")
        if auto["ran"] and unguarded.get("fingerprint"):
            row["auto_equal"] = auto_print == unguarded["fingerprint"]
            row["acted_on"] = row["auto_actions"] > 0 or not row["auto_equal"]
        else:  # a failed run says nothing either way; "cases with a failed run" counts it
            row["auto_equal"] = row["acted_on"] = None
    return row


# (label, kind, the rows it counts among, the test) -- the totals, in print order
MEASURES: list[tuple[str, str, str, Callable[[dict[str, Any]], bool], Callable[[dict[str, Any]], bool]]] = [
    ("faulty_detected_live", "faulty detected (live)", "faulty", lambda r: True, lambda r: r["live"]["detected"]),
    ("faulty_detected_doctor", "faulty detected (doctor)", "faulty", lambda r: True,
     lambda r: r["doctor"]["detected"]),
    ("top_cause_right_live", "top cause right (live)", "faulty", lambda r: True, lambda r: r["live_right"]),
    ("top_cause_right_doctor", "top cause right (doctor)", "faulty", lambda r: True, lambda r: r["doctor_right"]),
    ("top_cause_right_doctor_signal", "  ... of the logs with the signal", "faulty", lambda r: r["signal_in_log"],
     lambda r: r["doctor_right"]),
    ("confident_wrong_live", "confident and wrong (live)", "faulty", lambda r: True,
     lambda r: r["live_confident_wrong"]),
    ("confident_wrong_doctor", "confident and wrong (doctor)", "faulty", lambda r: True,
     lambda r: r["doctor_confident_wrong"]),
    ("uncertain_live", "'uncertain' (live)", "faulty", lambda r: True, lambda r: r["live_uncertain"]),
    ("fixed_flagged_live", "fixed twins flagged (live)", "faulty", lambda r: True,
     lambda r: r["fixed_live_flagged"]),
    ("fixed_flagged_doctor", "fixed twins flagged (doctor)", "faulty", lambda r: True,
     lambda r: r["fixed_doctor_flagged"]),
    ("auto_within_2x", "auto within 2x of the fixed twin", "faulty", lambda r: r["auto_within_2x"] is not None,
     lambda r: bool(r["auto_within_2x"])),
    ("healthy_flagged_live", "healthy flagged (live)", "healthy", lambda r: r["live"]["ran"],
     lambda r: r["live"]["detected"]),
    ("healthy_flagged_doctor", "healthy flagged (doctor)", "healthy", lambda r: r["doctor"]["ran"],
     lambda r: r["doctor"]["detected"]),
    ("healthy_acted_on", "healthy acted on (auto)", "healthy", lambda r: r["acted_on"] is not None,
     lambda r: r["acted_on"]),
    ("healthy_confident_cause_live", "healthy with a confident cause (live)", "healthy", lambda r: r["live"]["ran"],
     lambda r: _confident_cause(r["live"])),
    ("healthy_confident_cause_doctor", "healthy with a confident cause (doctor)", "healthy",
     lambda r: r["doctor"]["ran"], lambda r: _confident_cause(r["doctor"])),
    ("cases_with_failed_runs", "cases with a failed run", "any", lambda r: True, lambda r: bool(r["failed"])),
]


def totals(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    out = {}
    for key, _, kind, counted, test in MEASURES:
        among = [r for r in rows if (kind == "any" or r["kind"] == kind) and counted(r)]
        out[key] = {"n": sum(1 for r in among if test(r)), "of": len(among)}
    return out


# -- printing --------------------------------------------------------------------------------------------------------
def _fraction(t: dict[str, int]) -> str:
    if not t["of"]:
        return "-"
    return f"{t['n']}/{t['of']} ({100 * t['n'] / t['of']:.0f}%)"


def _mark(flag: bool | None) -> str:
    return "-" if flag is None else ("yes" if flag else "no")


def _error_cell(view: dict[str, Any]) -> str:
    """The reason a view is missing, without the run folder's path that the doctor's messages start with."""
    text = str(view.get("error") or "failed")
    if text.startswith(("/", str(REPO))) and ": " in text:
        text = text.split(": ", 1)[1]
    return f"[red]{escape(text[:60])}[/]"


def _cause_cell(view: dict[str, Any], right: bool) -> str:
    if not view["ran"]:
        return _error_cell(view)
    colour = "green" if right else ("yellow" if view["top"] in NOT_A_CAUSE else "red")
    return f"[{colour}]{view['top']}[/] {view['confidence']:.2f}" + ("" if view["detected"] else " [dim](quiet)[/]")


def print_report(rows: list[dict[str, Any]], parts: dict[str, list[dict[str, Any]]], show_rows: bool,
                 console: Any) -> None:
    from rich.table import Table

    if show_rows:
        faulty = [r for r in rows if r["kind"] == "faulty"]
        if faulty:
            table = Table(title="faulty cases", title_justify="left")
            for column in ("case", "fw", "cause", "live top cause", "doctor top cause", "fixed twin flagged",
                           "auto/fixed loss", "s"):
                table.add_column(column)
            for r in faulty:
                fixed = " / ".join(x for x in (r["fixed_live_worst"] and f"live {r['fixed_live_worst']}",
                                               r["fixed_doctor_worst"] and f"doctor {r['fixed_doctor_worst']}") if x)
                auto, ref = r["auto_final_loss"], r["fixed_final_loss"]
                loss = (f"{'stopped' if r['auto_stopped'] else _num(auto)} / {_num(ref)} "
                        f"{'[green]ok[/]' if r['auto_within_2x'] else '[red]>2x[/]'}")
                table.add_row(r["case"] + (" [red](failed: " + ",".join(r["failed"]) + ")[/]" if r["failed"] else ""),
                              r["framework"], r["cause"], _cause_cell(r["live"], r["live_right"]),
                              _cause_cell(r["doctor"], r["doctor_right"])
                              + ("" if r["signal_in_log"] else " [dim]*[/]"),
                              fixed or "-", loss, f"{r['seconds']:.0f}")
            console.print(table)
            console.print("[dim]*: this native log does not carry the cause's signal (a log of loss/lr/eval "
                          "loss, or of epoch means for a batch's cause: signal_in_log)[/]")
        healthy = [r for r in rows if r["kind"] == "healthy"]
        if healthy:
            table = Table(title="healthy cases", title_justify="left")
            for column in ("case", "fw", "live worst finding", "doctor worst finding", "auto acted on", "s"):
                table.add_column(column)
            for r in healthy:
                if r["acted_on"] is None:
                    acted = "[red]not measured (a run failed)[/]"
                elif r["acted_on"]:
                    acted = f"[red]{r['auto_actions']} actions{'' if r['auto_equal'] else ', params differ'}[/]"
                else:
                    acted = "[green]no[/] (bitwise equal)"
                table.add_row(r["case"] + (" [red](failed: " + ",".join(r["failed"]) + ")[/]" if r["failed"] else ""),
                              r["framework"], _worst_cell(r["live"]), _worst_cell(r["doctor"]), acted,
                              f"{r['seconds']:.0f}")
            console.print(table)
    table = Table(title="totals (cases)", title_justify="left")
    table.add_column("measure")
    for part in parts:
        table.add_column(part)
    part_totals = {part: totals(part_rows) for part, part_rows in parts.items()}
    for key, label, *_ in MEASURES:
        table.add_row(label, *(_fraction(part_totals[part][key]) for part in parts))
    console.print(table)


def by_cause(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, int]]]:
    """The faulty cases' figures per cause (issue 16 asks for auto's per cause)."""
    causes = sorted({r["cause"] for r in rows if r["kind"] == "faulty"})
    return {cause: totals([r for r in rows if r["kind"] == "faulty" and r["cause"] == cause]) for cause in causes}


def print_by_cause(rows: list[dict[str, Any]], console: Any) -> None:
    from rich.table import Table

    table = Table(title="faulty cases by cause", title_justify="left")
    keys = ("faulty_detected_live", "top_cause_right_live", "top_cause_right_doctor", "confident_wrong_live",
            "auto_within_2x")
    table.add_column("cause")
    for key in keys:
        table.add_column(next(label for k, label, *_ in MEASURES if k == key).replace(" (live)", " live"))
    for cause, figures in by_cause(rows).items():
        table.add_row(cause, *(_fraction(figures[k]) for k in keys))
    console.print(table)


def _worst_cell(view: dict[str, Any]) -> str:
    if not view["ran"]:
        return _error_cell(view)
    return f"[red]{view['worst']}[/]" if view["worst"] else "[green]none[/]"


def _num(value: float | None) -> str:
    return "nan" if value is None else f"{value:.3g}"


# -- the test suite's fast subset ----------------------------------------------------------------------------------
SECONDS_FILE = REPO / "tests" / "corpus" / "run_seconds.json"


def write_seconds(results: dict[str, dict[str, dict[str, Any]]], path: Path = SECONDS_FILE) -> None:
    """Merges the measured CPU seconds (the run and the reading of its logs, imports excluded) of each run into
    ``path``; a run that failed is recorded as None (never fast)."""
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = {}
    for name, runs in results.items():
        recorded[name] = {variant: (record.get("cpu_s") if record.get("status") == "ok" else None)
                          for variant, record in sorted(runs.items())}
    path.write_text(json.dumps(dict(sorted(recorded.items())), indent=1) + "\n", encoding="utf-8")


# -- the command -----------------------------------------------------------------------------------------------------
def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.diagnosis", description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=PARTS, default="dev",
                        help="dev (default: what rules may be tuned on), holdout, or all")
    parser.add_argument("--case", nargs="+", action="extend", default=[], metavar="NAME", help="only these cases")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (default 2)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every figure here")
    parser.add_argument("--peers", nargs="*", metavar="PEER",
                        help="also run the PyPI peers (all, or those named) on the same runs (the bench extra)")
    parser.add_argument("--rerun", action="store_true", help="ignore the cache")
    parser.add_argument("--cached", action="store_true",
                        help="reprint: take cached runs even when trainguard changed since they ran")
    parser.add_argument("--show-cases", action="store_true", help="with --part holdout: print its cases' rows")
    parser.add_argument("--write-holdout", action="store_true", help="write the corpus' holdout.json and exit")
    parser.add_argument("--write-seconds", action="store_true",
                        help="record each run's CPU seconds in tests/corpus/run_seconds.json (the fast "
                             "subset of the test suite is chosen by them)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per run (default 120)")
    parser.add_argument("--corpus", type=Path, default=CORPUS_DIR, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from rich.console import Console

    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=150)  # a file or a pipe: wide enough for a row per line
    every = discover(args.corpus)
    if args.write_holdout:
        write_holdout(every, args.corpus / "holdout.json")
        print(f"wrote {args.corpus / 'holdout.json'}: {sum(c.held_out for c in every)} of {len(every)} held out")
        return 0
    if args.write_seconds and args.corpus.resolve() != CORPUS_DIR:
        print("benchmarks.diagnosis: --write-seconds records the repository's corpus only", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print("benchmarks.diagnosis: --jobs must be at least 1", file=sys.stderr)
        return 2
    by_name = {c.name: c for c in every}
    for name in args.case:
        if name not in by_name:
            print(f"benchmarks.diagnosis: no case named {name!r} in {args.corpus}", file=sys.stderr)
            return 2
        if not in_part(name, args.part):
            print(f"benchmarks.diagnosis: {name} is not in the {args.part} part (use --part all)", file=sys.stderr)
            return 2
    cases = [c for c in every if in_part(c.name, args.part) and (not args.case or c.name in args.case)]
    if not cases:
        print(f"benchmarks.diagnosis: no cases in the {args.part} part of {args.corpus}", file=sys.stderr)
        return 2
    show_rows = args.part != "holdout" or args.show_cases

    def progress(line: str) -> None:
        # Held-out runs are counted, not named, unless their rows may be shown.
        print(line if show_rows else line.split("]")[0] + "] a held-out run", file=sys.stderr, flush=True)

    started = time.perf_counter()
    results = run_cases(cases, args.cache_dir, args.jobs, args.rerun, args.timeout, progress=progress,
                        any_trainguard=args.cached)
    rows = [score_case(c, results[c.name]) for c in cases]
    if args.write_seconds:
        write_seconds(results)
    parts = {"dev": [r for r in rows if not r["held_out"]], "holdout": [r for r in rows if r["held_out"]]}
    shown_parts = {args.part: rows} if args.part != "all" else {**parts, "all": rows}
    console.print(f"trainguard diagnosis benchmark: {len(cases)} cases ({args.part}), "
                  f"{time.perf_counter() - started:.0f} s")
    print_report(rows, shown_parts, show_rows, console)
    if show_rows and any(r["kind"] == "faulty" for r in rows):  # one case a cause would be a per-case row
        print_by_cause(rows, console)
    report = {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "command": "python -m benchmarks.diagnosis " + " ".join(argv if argv is not None else sys.argv[1:]),
              "part": args.part, "trainguard_source": _trainguard_version(),
              "totals": {part: totals(part_rows) for part, part_rows in shown_parts.items()},
              "by_cause": by_cause(rows) if show_rows else {}, "cases": rows if show_rows else [], "peers": None}
    if args.json:  # written now and again after the peers: an interrupted peer run keeps trainguard's figures
        args.json.write_text(json.dumps(_json_safe(report), indent=1), encoding="utf-8")
    if args.peers is not None:
        from benchmarks.corpus.peers import PEERS, peer_totals, print_peers, run_peers

        chosen = args.peers or [p.name for p in PEERS]
        unknown = sorted(set(chosen) - {p.name for p in PEERS})
        if unknown:
            print(f"benchmarks.diagnosis: unknown peers {unknown}; known: {[p.name for p in PEERS]}", file=sys.stderr)
            return 2
        live_variants = tuple(v for v, peer in PEER_VARIANTS.items() if peer in chosen)
        torch_cases = {c.name for c in cases if c.path.is_file() and declared_fields(c).get("framework") == "torch"}
        live = run_cases(cases, args.cache_dir, args.jobs, args.rerun, args.timeout,
                         progress=progress, any_trainguard=args.cached,
                         variants_of=lambda c: live_variants if c.name in torch_cases else ())
        peers = run_peers(rows, args.cache_dir, live, chosen)
        print_peers(peers, rows, console)
        report["peers"] = {"totals": peer_totals(peers, rows),
                           "status": {name: result["status"] for name, result in peers.items()},
                           "cases": {name: result["cases"] for name, result in peers.items()} if show_rows else {}}
        if args.json:
            args.json.write_text(json.dumps(_json_safe(report), indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    # Killed (a CI timeout, kill PID): unwind as on Ctrl-C, so that no run outlives the benchmark.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    sys.exit(main())
