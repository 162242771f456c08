"""Terminal summary of a run log, drawn with rich."""
from __future__ import annotations

import math

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trainguard.io.runlog import RunLog

__all__ = ["print_run_summary", "sparkline"]

_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 60) -> str:
    """A one-line plot; non-finite points show as ``!``. Long series are bucketed by their mean."""
    if not values:
        return ""
    # Near the float limit (losses of 1e308) sums and spans overflow: scale by a power of two first (exact).
    largest = max((abs(v) for v in values if math.isfinite(v)), default=0.0)
    if largest > 1e300:
        unit = 2.0 ** math.ceil(math.log2(largest / 1e300))
        values = [v / unit for v in values]
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
    """Every text from the log is escaped: a message holding "[/]" is shown, not read as rich markup."""
    console = console or Console()
    steps = log.steps
    status = log.end.get("status", "?") if log.end is not None else \
        "no end record (the run crashed or is still going)"
    console.print(f"[bold]{escape(str(log.path))}[/bold]  {escape(log.header.get('framework', ''))}  "
                  f"policy={escape(str(log.header.get('config', {}).get('policy', '?')))}")
    console.print(f"steps recorded: {len(steps)}   status: {escape(status)}")
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
            table.add_row(str(f.step), f.severity.name.lower(), escape(f.code), escape(f.where or ""),
                          escape(f.message))
        console.print(table)
    else:
        console.print("no findings")
    if log.actions:
        table = Table(title="actions")
        for col in ("step", "action", "reason", "params", "effect"):
            table.add_column(col)
        for a in log.actions:
            table.add_row(str(a.step), escape(a.kind), escape(a.reason or ""), escape(_kv(a.params)),
                          escape(_kv(a.effect)))
        console.print(table)
    _print_diagnosis(log, console)
    for event in log.events:
        if event.get("kind") == "internal_error":
            console.print(f"[yellow]guard internal error at step {escape(str(event.get('step')))}: "
                          f"{escape(str(event.get('message')))}[/yellow]")
    for problem in log.problems:
        console.print(f"[yellow]{escape(problem)}[/yellow]")


def _print_diagnosis(log: RunLog, console: Console) -> None:
    """The causes the guard recorded at close; for a log without that record, the diagnosis of its steps."""
    if log.diagnosis is not None:
        causes, source = log.diagnosis, "recorded by the guard at close"
    else:
        from trainguard.diagnosis import diagnose_log

        try:
            causes, source = [c.to_dict() for c in diagnose_log(log)], "diagnosed from the log"
        except Exception as e:  # a fault of the diagnosis must not cost the user the rest of the report
            console.print(f"[yellow]diagnosis failed ({type(e).__name__}: {escape(str(e))}); please report "
                          f"it[/yellow]")
            return
    if not causes:
        console.print(f"diagnosis ({source}): no cause found")
        return
    table = Table(title=f"diagnosis ({source})")
    for col in ("cause", "confidence", "message", "fix"):
        table.add_column(col)
    for cause in causes:
        confidence = cause.get("confidence", 0.0)
        table.add_row(escape(cause["code"]), f"{confidence:.2f}", escape(cause.get("message", "")),
                      escape(cause.get("fix", {}).get("summary", "")))
    console.print(table)


def _kv(d: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items())
