"""Terminal summary of a run log, drawn with rich."""
from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from trainguard.io.runlog import RunLog

__all__ = ["print_run_summary", "sparkline"]

_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 60) -> str:
    """A one-line plot; non-finite points show as ``!``. Long series are bucketed by their mean."""
    if not values:
        return ""
    step = max(1, math.ceil(len(values) / width))
    buckets = [values[i:i + step] for i in range(0, len(values), step)]
    points = [math.nan if any(not math.isfinite(v) for v in b) else sum(b) / len(b) for b in buckets]
    finite = [p for p in points if math.isfinite(p)]
    if not finite:
        return "!" * len(points)
    lo, hi = min(finite), max(finite)
    span = hi - lo or 1.0
    return "".join("!" if not math.isfinite(p) else _BARS[int((p - lo) / span * (len(_BARS) - 1))] for p in points)


def print_run_summary(log: RunLog, console: Console | None = None) -> None:
    console = console or Console()
    steps = log.steps
    status = log.end["status"] if log.end else "no end record (the run crashed or is still going)"
    console.print(f"[bold]{log.path}[/bold]  {log.header.get('framework', '')}  "
                  f"policy={log.header.get('config', {}).get('policy', '?')}")
    console.print(f"steps recorded: {len(steps)}   status: {status}")
    losses = [s.loss for s in steps if s.loss is not None]
    if losses:
        finite = [v for v in losses if math.isfinite(v)]
        console.print(f"loss  {sparkline(losses)}")
        if finite:
            console.print(f"      first {losses[0]:.4g}  min {min(finite):.4g}  last {losses[-1]:.4g}")
    norms = [s.grad_norm for s in steps if s.grad_norm is not None]
    if norms:
        console.print(f"|g|   {sparkline(norms)}")
    if log.findings:
        table = Table(title="findings")
        for col in ("step", "severity", "code", "where", "message"):
            table.add_column(col)
        for f in log.findings:
            table.add_row(str(f.step), f.severity.name.lower(), f.code, f.where or "", f.message)
        console.print(table)
    else:
        console.print("no findings")
    if log.actions:
        table = Table(title="actions")
        for col in ("step", "action", "reason", "params", "effect"):
            table.add_column(col)
        for a in log.actions:
            table.add_row(str(a.step), a.kind, a.reason or "", _kv(a.params), _kv(a.effect))
        console.print(table)
    for event in log.events:
        if event.get("kind") == "internal_error":
            console.print(f"[yellow]guard internal error at step {event.get('step')}: {event.get('message')}[/yellow]")
    for problem in log.problems:
        console.print(f"[yellow]{problem}[/yellow]")


def _kv(d: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items())
