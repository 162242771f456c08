"""The PyPI peers on the corpus (``python -m benchmarks.diagnosis --peers``; the ``bench`` extra installs them).

Each peer reads what it reads by design, with its defaults, from the same runs as trainguard:

- losslint 0.4 reads log files (CSV, ``trainer_state.json``, JSONL, TensorBoard): ``losslint check NATIVE_LOG
  --format json``.
- trainpulse 0.4 takes per-step values pushed to ``Monitor.log(name, step, value)``: the native log's loss, LR and
  gradient norm, row by row.
- training-doctor 0.1 takes per-step values pushed to ``Doctor.log(step, **metrics)`` (its CSV loader reads no
  ``trainer_state.json``): the native log's loss, LR, gradient norm and evaluation loss, row by row, each row
  checked as it arrives.
- stabilityguard 0.3 wraps a live optimizer (``GuardedOptimizer(optimizer, model)``, which skips the steps it finds
  spiking): it wraps each PyTorch-loop case's optimizer in an extra run (variant ``peer_stabilityguard``).
- arc-vigil 1.0 watches a live model (``BendexMonitor(model).observe(step)``): it observes each PyTorch-loop case's
  model every step, before the optimizer step, in an extra run (``peer_arc_vigil``).

The two live peers are wired in where a case asks for trainguard's guard (``ctx.torch_guard``/``ctx.torch_step``):
only the ``torch`` cases, whose loops call those; they have no Keras, HF or Lightning form. stabilityguard flags a
run when it counted a gradient spike; arc-vigil when it reported an instability event (it has no severities).

The values handed to trainpulse and training-doctor are read from the native log by trainguard's own reader
(``trainguard.doctor.read_run``): the same rows the doctor scores. A peer *flags* a run when it reports something
at warning or above (losslint: ``warning``/``error``; trainpulse: ``warning``/``critical``; training-doctor:
``warning``/``critical``); reports about the file itself (losslint's ``parse`` and ``step_backtrack``) do not count.
"""
from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from benchmarks.corpus.case import RunContext

__all__ = ["PEERS", "Peer", "run_peers", "print_peers", "peer_totals", "LIVE_PEERS", "LivePeerContext"]


@dataclass(frozen=True)
class Peer:
    name: str  # the PyPI name
    module: str  # what ``import`` takes
    check: Callable[[Path], list[str]] | None  # native log -> what it flagged; None: a live peer


def _rows(path: Path) -> list[dict[str, float]]:
    from trainguard.doctor import read_run

    series = read_run(path)
    roles = {"loss": series.loss, "lr": series.optional("lr"), "grad_norm": series.optional("grad_norm")}
    rows = []
    for i, step in enumerate(series.step):
        rows.append({"step": int(step), **{role: float(values[i]) for role, values in roles.items()
                                           if values is not None and not math.isnan(values[i])}})
    if series.eval_loss is not None:  # evaluation rows, interleaved by step
        for step, value in zip(series.eval_step, series.eval_loss):
            if not math.isnan(value):
                rows.append({"step": int(step), "eval_loss": float(value)})
        rows.sort(key=lambda r: r["step"])
    return rows


def _losslint(path: Path) -> list[str]:
    executable = shutil.which("losslint", path=str(Path(sys.executable).parent)) or shutil.which("losslint")
    out = subprocess.run([executable, "check", str(path), "--format", "json"], capture_output=True, text=True,
                         timeout=120)
    findings = json.loads(out.stdout).get("findings", [])
    return sorted({f["check"] for f in findings
                   if f["severity"] in ("warning", "error") and f["check"] not in ("parse", "step_backtrack")})


def _trainpulse(path: Path) -> list[str]:
    from trainpulse import Monitor

    monitor = Monitor()
    names = {"loss": "loss", "lr": "lr", "grad_norm": "grad_norm"}
    for row in _rows(path):
        for role, name in names.items():
            if role in row:
                monitor.log(name, row["step"], row[role])
    return sorted({a.detector for a in monitor.alerts if a.severity.value in ("warning", "critical")})


def _training_doctor(path: Path) -> list[str]:
    from training_doctor import Doctor

    doctor = Doctor()
    for row in _rows(path):
        metrics = {k: v for k, v in row.items() if k != "step"}
        if "loss" in metrics:
            metrics["train_loss"] = metrics["loss"]  # its overfitting check reads train_loss and eval_loss
        doctor.log(row["step"], **metrics)
    return sorted({d.detector_name or d.problem for d in doctor.diagnoses
                   if d.severity.value in ("warning", "critical")})


class _StabilityGuardWatch:
    def __init__(self, model: Any, optimizer: Any, folder: Path) -> None:
        from stabilityguard import GuardedOptimizer

        self.optimizer = GuardedOptimizer(optimizer, model, log_dir=str(folder))  # its defaults otherwise

    def step(self, loss: Any) -> None:
        self.optimizer.step(loss=float(loss.detach()))

    def flagged(self) -> list[str]:
        spikes, skips = self.optimizer.total_spikes, self.optimizer.total_skips
        return [f"{spikes} gradient spikes ({skips} steps skipped)"] if spikes else []

    def close(self) -> None:
        self.optimizer.close()


class _ArcVigilWatch:
    def __init__(self, model: Any, optimizer: Any, folder: Path) -> None:
        from arc_vigil import BendexMonitor

        self.monitor, self.optimizer, self.steps = BendexMonitor(model), optimizer, 0

    def step(self, loss: Any) -> None:
        self.monitor.observe(self.steps)  # the gradients of this step, the weights before its update
        self.optimizer.step()
        self.steps += 1

    def flagged(self) -> list[str]:
        return [f"{e['mode']} event at step {e['step']} (suspect {e['suspect_module']})" for e in self.monitor.events]

    def close(self) -> None:
        pass


LIVE_PEERS: dict[str, Callable[[Any, Any, Path], Any]] = {"stabilityguard": _StabilityGuardWatch,
                                                          "arc-vigil": _ArcVigilWatch}


@dataclass
class LivePeerContext(RunContext):
    """A run context whose "guard" is a live peer: PyTorch-loop cases only (``torch_guard``/``torch_step``)."""

    peer: str = ""
    watches: list[Any] = field(default_factory=list)

    def torch_guard(self, model: Any, optimizer: Any, name: str = "run", **kwargs: Any) -> Any:
        watch = LIVE_PEERS[self.peer](model, optimizer, self.outdir / f"{self.peer}_{name}")
        self.watches.append(watch)
        return watch

    def torch_step(self, guard: Any, optimizer: Any, loss: Any, **kwargs: Any) -> None:
        guard.step(loss)

    def close(self, guard: Any) -> None:
        guard.close()

    def flagged(self) -> list[str]:
        return [what for watch in self.watches for what in watch.flagged()]


PEERS = [
    Peer("losslint", "losslint", _losslint),
    Peer("trainpulse", "trainpulse", _trainpulse),
    Peer("training-doctor", "training_doctor", _training_doctor),
    Peer("stabilityguard", "stabilityguard", None),  # live: the peer_stabilityguard run of each torch case
    Peer("arc-vigil", "arc_vigil", None),  # live: the peer_arc_vigil run
]


def _installed(peer: Peer) -> bool:
    return importlib.util.find_spec(peer.module) is not None


def run_peers(rows: list[dict[str, Any]], cache_dir: Path, live: dict[str, dict[str, dict[str, Any]]],
              chosen: list[str] | None = None) -> dict[str, Any]:
    """For each peer: per case, what it flagged: a log peer on the ``observe`` run's native log (and the fixed
    twin's), a live peer in its own run (``live``: case -> variant -> run_one's result record)."""
    out: dict[str, Any] = {}
    for peer in PEERS:
        if chosen is not None and peer.name not in chosen:
            continue
        if not _installed(peer):
            out[peer.name] = {"status": "not installed (pip install -e '.[bench]')", "cases": {}}
            continue
        if peer.check is None:
            cases = {}
            for case, runs in live.items():
                for record in runs.values():
                    if record.get("peer", {}).get("name") == peer.name:
                        cases[case] = {"observe": {"flagged": record["peer"]["flagged"]}}
                    elif record.get("status") != "ok" and peer.name.replace("-", "_") in record["variant"]:
                        cases[case] = {"observe": {"error": record.get("status", "failed")}}
            out[peer.name] = {"status": "run", "cases": cases}
            continue
        cases = {}
        for row in rows:
            variants = ("observe", "fixed_observe") if row["kind"] == "faulty" else ("observe",)
            cases[row["case"]] = {v: _check(peer, cache_dir / row["case"] / v) for v in variants}
        out[peer.name] = {"status": "run", "cases": cases}
    return out


def _check(peer: Peer, folder: Path) -> dict[str, Any]:
    from benchmarks.corpus.run_one import native_log

    path = native_log(folder) if folder.is_dir() else None
    if path is None:
        return {"error": "no native log"}
    try:
        return {"flagged": peer.check(path)}
    except Exception as e:  # a peer's crash on a log is its result on that log
        return {"error": f"{type(e).__name__}: {e}"[:200]}


def peer_totals(peers: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, int]]]:
    kinds = {r["case"]: r["kind"] for r in rows}
    out = {}
    for name, result in peers.items():
        if result["status"] != "run":
            continue
        counts = {"faulty_detected": [0, 0], "fixed_flagged": [0, 0], "healthy_flagged": [0, 0], "errors": [0, 0]}
        for case, runs in result["cases"].items():
            for variant, found in runs.items():
                key = ("healthy_flagged" if kinds[case] == "healthy" else
                       "faulty_detected" if variant == "observe" else "fixed_flagged")
                counts["errors"][1] += 1
                if "error" in found:
                    counts["errors"][0] += 1
                    counts[key][1] += 1  # counted as not flagged: what the user got was an error
                    continue
                counts[key][0] += bool(found["flagged"])
                counts[key][1] += 1
        out[name] = {k: {"n": n, "of": of} for k, (n, of) in counts.items()}
    return out


def print_peers(peers: dict[str, Any], rows: list[dict[str, Any]], console: Any) -> None:
    from rich.table import Table

    totals = peer_totals(peers, rows)
    table = Table(title="PyPI peers on the same runs (native logs)", title_justify="left")
    for column in ("peer", "faulty detected", "fixed twins flagged", "healthy flagged", "errors on a log", "note"):
        table.add_column(column)
    live = {p.name for p in PEERS if p.check is None}
    for name, result in peers.items():
        if name in totals:
            t = totals[name]
            table.add_row(name, *(_fraction(t[k]) for k in ("faulty_detected", "fixed_flagged", "healthy_flagged",
                                                           "errors")),
                          "live, in its own run (PyTorch loops only)" if name in live else "reads the native log")
        else:
            table.add_row(name, "-", "-", "-", "-", result["status"])
    console.print(table)


def _fraction(t: dict[str, int]) -> str:
    return f"{t['n']}/{t['of']}" if t["of"] else "-"
