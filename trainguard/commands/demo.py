"""``trainguard demo``: every seed scenario trained twice, unguarded and under ``policy="auto"``, compared.

Prints a rich table (scenario, unguarded outcome, cause found, action taken, guarded outcome, seconds), writes
each guarded run's log (``trainguard report DIR/NAME.jsonl`` reads it) and an HTML page with the loss curves.
"""
from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

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
    from rich.markup import escape

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
    console.print(f"{len(scenarios)} real training failures, each trained twice: unguarded, then through "
                  f"trainguard.Guard(model, optimizer, policy={POLICY!r}) ({size} size)")
    start = time.perf_counter()
    comparisons = _run_all(scenarios, size, out, console)
    rows = [_row(c) for c in comparisons]
    console.print(_table(comparisons, rows))
    elapsed = time.perf_counter() - start
    right = sum(c.cause_right for c in comparisons)
    fixed = sum(c.guarded is not None and not c.guarded.failed for c in comparisons)
    console.print(f"causes found right: {right}/{len(comparisons)}   guarded runs rid of the fault's symptom: "
                  f"{fixed}/{len(comparisons)}   ({size} size, {elapsed:.0f} s)")
    if fixed < len(comparisons):
        console.print("A guard cannot rewrite a loss function or swap an activation: for the runs it could not "
                      "rid of the symptom, the fix of each cause found is in docs/causes.md and the HTML report.")
    for note in sorted({n for c in comparisons if c.guarded for n in c.guarded.notes}):
        console.print(f"[yellow]note:[/yellow] {escape(note)}")
    if not args.no_html:
        from trainguard.io.files import write_text_atomic
        from trainguard.scenarios.summary import html_report

        page = out / "demo.html"
        write_text_atomic(page, html_report(comparisons, rows, HEADERS, f"{size} size, policy {POLICY!r}, "
                                                                        f"{elapsed:.0f} s"))
        console.print(f"HTML report: {page}")
    console.print(f"run logs: {out}/<scenario>.jsonl  (read one with `trainguard report {out}/<scenario>.jsonl`)")
    return 1 if any(c.error for c in comparisons) else 0


def _run_all(scenarios: list[Scenario], size: str, out: Path, console: Console) -> list[Comparison]:
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from trainguard.scenarios.summary import Comparison

    comparisons = []
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn())
    # The guard's warnings (e.g. "modules in eval mode") are kept for the summary, not printed mid-progress.
    with Progress(*columns, console=console, transient=True) as progress, \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        task = progress.add_task("", total=2 * len(scenarios))
        for i, scenario in enumerate(scenarios, 1):
            progress.update(task, description=f"{scenario.name}: unguarded")
            unguarded, error = _attempt(scenario.run, healthy=False, guard_policy=None, size=size)
            progress.advance(task)
            progress.update(task, description=f"{scenario.name}: policy {POLICY!r}")
            log = out / f"{scenario.name}.jsonl"
            log.unlink(missing_ok=True)  # the writer appends; one demo run per file
            guarded, guarded_error = _attempt(scenario.run, healthy=False, guard_policy=POLICY, log=str(log),
                                              size=size)
            progress.advance(task)
            comparisons.append(Comparison(scenario, unguarded, guarded, error or guarded_error))
            status = [f"{label} {'error' if r is None else 'FAIL' if r.failed else 'OK'}"
                      for label, r in (("unguarded", unguarded), ("guarded", guarded))]
            progress.console.print(f"[{i}/{len(scenarios)}] {scenario.name}: {', '.join(status)}")
    for message in sorted({str(w.message) for w in caught if str(w.message).startswith("trainguard")}):
        console.print(f"[dim]guard warning: {escape(message)}[/dim]")
    return comparisons


def _attempt(run: Callable[..., ScenarioResult], **kwargs: object) -> tuple[ScenarioResult | None, str | None]:
    """A run, or the one-line reason it could not be made (shown in the table; the demo then exits 1)."""
    try:
        return run(**kwargs), None
    except Exception as e:  # noqa: BLE001 - one broken run must not hide the other scenarios
        return None, f"{type(e).__name__}: {e}"


def _outcome(result: ScenarioResult | None, error: str | None) -> str:
    if result is None:
        return f"error: {error}"
    text = f"{'FAIL' if result.failed else 'OK'}: {result.outcome}"
    # Why a guarded run ended early matters (the policy gave up); an unguarded run's NaN is already said.
    return f"{text}; {result.stopped}" if result.stopped and result.policy is not None else text


def _row(c: Comparison) -> tuple[str, ...]:
    from trainguard.scenarios.summary import actions_taken, cause_found

    name = f"{c.scenario.name} ({c.scenario.seed_id})"
    seconds = " + ".join(f"{r.seconds:.1f}" if r else "-" for r in (c.unguarded, c.guarded))
    if c.guarded is None:
        return (name, _outcome(c.unguarded, c.error), "-", "-", _outcome(None, c.error), seconds)
    cause = cause_found(c.guarded)
    if not c.cause_right:
        cause += f" (expected {c.scenario.cause})"
    return (name, _outcome(c.unguarded, c.error), cause, actions_taken(c.guarded), _outcome(c.guarded, c.error),
            seconds)


def _table(comparisons: list[Comparison], rows: list[tuple[str, ...]]) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"trainguard demo: the seed scenarios, unguarded and with policy={POLICY!r}",
                  show_lines=True)
    for header in HEADERS:
        table.add_column(header, overflow="fold")
    for c, row in zip(comparisons, rows):
        # Unguarded, failing is the expected outcome (yellow: the fault did not show); guarded, training is.
        unguarded = "red" if c.unguarded is None else "red" if c.unguarded.failed else "yellow"
        guarded = "green" if c.guarded is not None and not c.guarded.failed else "red"
        styles = ("bold", unguarded, "green" if c.cause_right else "yellow", "", guarded, "")
        table.add_row(*(Text(cell, style=style) for cell, style in zip(row, styles)))
    return table
