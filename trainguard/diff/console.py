"""Terminal summary of a :class:`~trainguard.diff.result.DiffResult`, drawn with rich."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trainguard.diff.result import CATEGORIES, DiffResult, RunInfo, format_value
from trainguard.report.console import sparkline

__all__ = ["print_diff"]

SHOWN_DIFFERENCES = 12

_CATEGORY_LABEL = {"data": "batch data", "lr": "learning rate", "batch_size": "batch size", "mode": "layer mode",
                   "bn_stats": "BN statistics", "loss": "loss", "gradient": "gradient", "weight": "weight"}


def print_diff(result: DiffResult, console: Console | None = None) -> None:
    console = console or Console()
    console.print(f"[bold]A[/bold] {_describe(result.run_a)}")
    console.print(f"[bold]B[/bold] {_describe(result.run_b)}")
    steps = result.compared_steps
    console.print(f"compared {len(steps)} steps ({steps[0]}-{steps[-1]}), {result.layer_steps} with per-layer "
                  f"statistics, relative tolerance {result.rtol:g}")
    first = result.first_divergence
    if first is None:
        console.print(f"[bold green]AGREE[/bold green]: every recorded quantity is within tolerance on all "
                      f"{len(steps)} compared steps")
    else:
        where = f" in [bold]'{escape(first.where)}'[/bold]" if first.where else ""
        console.print(f"[bold red]PART[/bold red] at step [bold]{first.step}[/bold]: "
                      f"{_CATEGORY_LABEL[first.category]} ({first.quantity}){where} differs first")
        cause = result.cause
        console.print(f"cause: [bold]{cause.code}[/bold]: {escape(cause.message)}")
        console.print(f"fix: {escape(cause.fix)}")
        console.print(f"see {cause.doc}")
        console.print(_differences_table(result))
        timeline = "  ".join(f"{_CATEGORY_LABEL[c]} {'-' if s is None else s}"
                             for c, s in result.first_step_by_category.items() if c in CATEGORIES)
        console.print(f"first differing step by kind: {timeline}")
    for label, curves in (("A", result.curves["a"]), ("B", result.curves["b"])):
        losses = [v for v in curves["loss"] if v is not None]
        if losses:
            console.print(f"loss {label} {sparkline(losses)}  last {format_value(losses[-1])}")
    for note in result.notes:
        console.print(f"[yellow]note: {escape(note)}[/yellow]")


def _describe(run: RunInfo) -> str:
    status = run.status or "no end record"
    return (f"{escape(run.path)}  {escape(run.framework)}  preset={run.preset or '?'}  steps {run.first_step}-"
            f"{run.last_step} ({run.steps} recorded)  {status}")


def _differences_table(result: DiffResult) -> Table:
    differences = result.differences
    table = Table(title=f"what differs at step {differences[0].step}, most upstream first", title_justify="left")
    for column in ("kind", "quantity", "where", "A", "B", "rel. diff"):
        table.add_column(column, justify="right" if column in ("A", "B", "rel. diff") else "left")
    for d in differences[:SHOWN_DIFFERENCES]:
        table.add_row(_CATEGORY_LABEL[d.category], d.quantity, escape(d.where or ""), format_value(d.a), format_value(d.b),
                      format_value(d.rel_diff))
    if len(differences) > SHOWN_DIFFERENCES:
        table.add_row("...", f"and {len(differences) - SHOWN_DIFFERENCES} more", "", "", "", "")
    return table

