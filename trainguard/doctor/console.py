"""The doctor's terminal report: per run, a sparkline of the loss, the findings with their causes and fixes."""
from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trainguard.core.findings import Severity
from trainguard.doctor.diagnose import RunDiagnosis
from trainguard.doctor.findings import json_step
from trainguard.report.console import sparkline

__all__ = ["print_diagnoses", "bucket_means"]

_STYLE = {Severity.INFO: "blue", Severity.WARNING: "yellow", Severity.ERROR: "red", Severity.CRITICAL: "bold red"}
_WIDTH = 60


def bucket_means(values: np.ndarray, width: int = _WIDTH) -> list[float]:
    """At most ``width`` bucket means (NaN when a bucket holds a non-finite value), so ``sparkline`` stays
    fast on a million steps."""
    n = len(values)
    if n <= width:
        return values.astype(float).tolist()
    edges = np.linspace(0, n, width + 1).astype(int)
    values = values.astype(float)
    finite = np.abs(values[np.isfinite(values)])
    # Summed as fractions of the largest finite value: a loss near 1e308 must not overflow its bucket's sum.
    scale = float(finite.max()) if len(finite) and finite.max() > 0 else 1.0
    sums = np.add.reduceat(values / scale, edges[:-1])
    return (sums / np.diff(edges) * scale).tolist()


def print_diagnoses(results: list[RunDiagnosis], console: Console | None = None, *, min_severity: Severity =
                    Severity.INFO) -> None:
    console = console or Console()
    for result in results:
        console.rule(f"[bold]{escape(str(result.path))}[/bold]", align="left")
        if result.error:
            console.print(f"[red]unreadable:[/red] {escape(result.error)}")
            continue
        series = result.series
        columns = ", ".join(f"{role}={name}" for role, name in series.columns.items())
        console.print(f"{series.format}, {len(series)} steps ({escape(columns)})")
        console.print(f"loss  {sparkline(bucket_means(series.loss))}")
        grad = series.optional("grad_norm")
        if grad is not None:
            console.print(f"|g|   {sparkline(bucket_means(grad))}")
        shown = [f for f in result.findings if f.severity >= min_severity]
        if not shown:
            hidden = len(result.findings)
            console.print("[green]healthy[/green]: no findings" + (f" ({hidden} below the shown severity)"
                                                                    if hidden else ""))
            _print_causes(result, console)
            continue
        table = Table(show_lines=False, expand=True)
        for name in ("severity", "step", "finding", "cause", "what"):
            table.add_column(name, overflow="fold")
        for f in shown:
            table.add_row(f"[{_STYLE[f.severity]}]{f.severity.name.lower()}[/]", str(json_step(f.step)), f.code,
                          f.cause, escape(f.message))
        console.print(table)
        _print_causes(result, console)
        for cause in dict.fromkeys(f.cause for f in shown if f.severity >= Severity.WARNING and f.cause != "none"):
            fix = next(f.fix for f in shown if f.cause == cause)
            console.print(f"  [bold]fix ({cause})[/bold]: {escape(fix)}")
    readable = [r for r in results if not r.error]
    worst = max((r.worst for r in readable if r.worst is not None), default=None)
    console.print(f"\n{len(results)} file(s), {len(results) - len(readable)} unreadable; worst finding: "
                  f"{worst.name.lower() if worst is not None else 'none'}")


def _print_causes(result: RunDiagnosis, console: Console) -> None:
    """The diagnosis engine's ranked causes: the root first; for ``uncertain``, its candidates."""
    if not result.causes:
        return
    top = result.causes[0]
    # Without a finding at warning the run may well be fine: the engine's reading is a suspicion, said so.
    harmed = any(f.severity >= Severity.WARNING for f in result.findings)
    label = "diagnosis" if harmed else "diagnosis (no finding at warning: the run may be fine)"
    console.print(f"  [bold]{label}[/bold]: {top.code} ({top.confidence:.0%}): {escape(top.message)}")
    if top.code == "uncertain":
        for candidate in top.evidence.get("candidates", []):
            console.print(f"    candidate {candidate['code']} ({candidate['confidence']:.0%}); would separate it: "
                          f"{escape(candidate['would_separate'])}")
    others = [c for c in result.causes[1:] if top.code != "uncertain" and "explained_by" not in c.evidence]
    for cause in others[:3]:
        console.print(f"    also: {cause.code} ({cause.confidence:.0%}): {escape(cause.message)}")
