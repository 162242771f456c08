"""``trainguard demo``: every seed scenario trained twice, unguarded and under ``policy="auto"``, compared.

Prints a rich table (scenario, unguarded outcome, cause found, action taken, guarded outcome, seconds), writes
each guarded run's log (``trainguard report DIR/NAME.jsonl`` reads it) and an HTML page with the loss curves.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from trainguard.scenarios import Scenario, ScenarioResult
    from trainguard.scenarios.summary import Comparison

__all__ = ["add_arguments", "run", "POLICY", "HEADERS"]

POLICY = "auto"
HEADERS = ("scenario", "unguarded outcome", "cause found", "action taken", "guarded outcome", "seconds")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--small", action="store_true", help="shorter runs, for CI (the faults still show)")
    parser.add_argument("--scenario", action="append", metavar="NAME",
                        help="run only this scenario (repeatable); default: all of them")
    parser.add_argument("--out", default="runs/demo", metavar="DIR",
                        help="where the run logs and demo.html go (default: runs/demo)")
    parser.add_argument("--no-html", action="store_true", help="do not write the HTML report")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from trainguard.cli import UserError
    from trainguard.scenarios import SCENARIOS, get_scenario

    try:
        scenarios = [get_scenario(name) for name in args.scenario] if args.scenario else list(SCENARIOS.values())
    except ValueError as e:
        raise UserError(str(e)) from None
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {out}: {e.strerror or e}") from None
    size = "small" if args.small else "full"
    console = Console()
    start = time.perf_counter()
    comparisons = _run_all(scenarios, size, out, console)
    rows = [_row(c) for c in comparisons]
    console.print(_table(comparisons, rows))
    elapsed = time.perf_counter() - start
    right = sum(c.cause_right for c in comparisons)
    fixed = sum(c.guarded is not None and not c.guarded.failed for c in comparisons)
    console.print(f"causes found right: {right}/{len(comparisons)}   guarded runs that trained: "
                  f"{fixed}/{len(comparisons)}   ({size} size, {elapsed:.0f} s)")
    for note in sorted({n for c in comparisons if c.guarded for n in c.guarded.notes}):
        console.print(f"[yellow]note:[/yellow] {note}")
    if not args.no_html:
        from trainguard.scenarios.summary import html_report

        page = out / "demo.html"
        page.write_text(html_report(comparisons, rows, HEADERS, f"{size} size, policy {POLICY!r}, "
                                                                f"{elapsed:.0f} s"), encoding="utf-8")
        console.print(f"HTML report: {page}")
    console.print(f"run logs: {out}/<scenario>.jsonl  (read one with `trainguard report {out}/<scenario>.jsonl`)")
    return 1 if any(c.error for c in comparisons) else 0


def _run_all(scenarios: list[Scenario], size: str, out: Path, console: Console) -> list[Comparison]:
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from trainguard.scenarios import GuardUnavailable
    from trainguard.scenarios.summary import Comparison

    comparisons = []
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
                  "{task.total}"), TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("", total=2 * len(scenarios))
        for scenario in scenarios:
            progress.update(task, description=f"{scenario.name}: unguarded")
            unguarded = scenario.run(healthy=False, guard_policy=None, size=size)
            progress.advance(task)
            progress.update(task, description=f"{scenario.name}: policy {POLICY!r}")
            log = out / f"{scenario.name}.jsonl"
            log.unlink(missing_ok=True)  # the writer appends; one demo run per file
            guarded, error = None, None
            try:
                guarded = scenario.run(healthy=False, guard_policy=POLICY, log=str(log), size=size)
            except GuardUnavailable as e:
                error = str(e)
            progress.advance(task)
            comparisons.append(Comparison(scenario, unguarded, guarded, error))
            progress.console.print(f"{scenario.name}: unguarded {_outcome(unguarded)}")
    return comparisons


def _outcome(result: ScenarioResult) -> str:
    return f"{'FAIL' if result.failed else 'OK'}: {result.outcome}"


def _row(c: Comparison) -> tuple[str, ...]:
    from trainguard.scenarios.summary import actions_taken, cause_found

    name = f"{c.scenario.name} ({c.scenario.seed_id})"
    unguarded = _outcome(c.unguarded)
    if c.guarded is None:
        return (name, unguarded, "-", "-", f"not run: {c.error}", f"{c.unguarded.seconds:.1f}")
    cause = cause_found(c.guarded)
    if not c.cause_right:
        cause += f" (expected {c.scenario.cause})"
    guarded = _outcome(c.guarded)
    if c.guarded.stopped:
        guarded += f"; {c.guarded.stopped}"
    return (name, unguarded, cause, actions_taken(c.guarded), guarded,
            f"{c.unguarded.seconds:.1f} + {c.guarded.seconds:.1f}")


def _table(comparisons: list[Comparison], rows: list[tuple[str, ...]]) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="trainguard demo: the seed scenarios, unguarded and with policy='auto'", show_lines=True)
    for header in HEADERS:
        table.add_column(header, overflow="fold")
    for c, row in zip(comparisons, rows):
        styles = ("bold", _style(c.unguarded.failed, bad_is_expected=True),
                  "green" if c.cause_right else "yellow", "", _style(c.guarded is None or c.guarded.failed), "")
        table.add_row(*(Text(cell, style=style) for cell, style in zip(row, styles)))
    return table


def _style(failed: bool, bad_is_expected: bool = False) -> str:
    if bad_is_expected:
        return "red" if failed else "yellow"
    return "red" if failed else "green"
