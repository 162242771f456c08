"""``trainguard doctor PATH...``: diagnose finished runs from their logs.

Exit codes: 0 when no finding reaches ``--fail-on``; 1 when one does; 2 when a named file cannot be read or
nothing readable was found (files found by searching a directory that turn out not to be logs are listed as
unreadable but do not by themselves make the exit code 2).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from trainguard.commands.errors import one_line
from trainguard.core.findings import Severity

__all__ = ["add_arguments", "run"]

_ROLES = ("step", "loss", "lr", "grad_norm", "batch_size", "eval_loss", "epoch")
_PROGRESS_FROM = 5  # files; fewer are read without a progress bar


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="log files or directories (searched recursively): CSV, JSONL, TensorBoard event "
                             "files, trainer_state.json, trainguard run logs")
    for role in _ROLES:
        flag = role.replace("_", "-")
        parser.add_argument(f"--{flag}-col", dest=f"{role}_col", metavar="NAME",
                            help=f"the column holding the {role.replace('_', ' ')} (default: detected by name)")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON (schema in docs/doctor.md)")
    parser.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report with plots")
    parser.add_argument("--fail-on", default="error", type=_severity, metavar="SEVERITY",
                        help="exit 1 when a finding is at least this severe: info, warning, error (default), "
                             "critical")
    parser.add_argument("--min-severity", default="info", type=_severity, metavar="SEVERITY",
                        help="hide findings below this severity in the terminal report (default: info)")


def _severity(text: str) -> Severity:
    try:
        return Severity.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def run(args: argparse.Namespace) -> int:
    from trainguard.cli import UserError
    from trainguard.doctor import ReadError, diagnose_file, find_logs

    try:
        files = find_logs(args.paths)
    except ReadError as e:
        raise UserError(str(e)) from None
    if not files:
        raise UserError(f"no log files found in {', '.join(args.paths)} (looked for *.csv, *.jsonl, "
                        f"trainer_state.json, *tfevents*)")
    named = {Path(p) for p in args.paths if not Path(p).is_dir()}
    if args.html:
        from trainguard.io.files import InputError, check_output_path
        try:  # before the work, so a mistyped command costs nothing
            check_output_path(args.html, [*files, *named])
        except InputError as e:
            raise UserError(f"--html {e}") from None
    overrides = {role: getattr(args, f"{role}_col") for role in _ROLES}
    results = _diagnose_all(files, overrides, diagnose_file, show_progress=not args.json)

    if args.html:
        from trainguard.doctor.html_report import render_html
        from trainguard.io.files import write_text_atomic
        try:
            write_text_atomic(args.html, render_html(results))
        except OSError as e:
            raise UserError(f"cannot write {args.html}: {e.strerror or e}") from None
    if args.json:
        json.dump({"runs": [r.to_dict() for r in results]}, sys.stdout, indent=2, allow_nan=False,
                  default=_json_default)
        sys.stdout.write("\n")
    else:
        from trainguard.doctor.console import print_diagnoses
        print_diagnoses(results, min_severity=args.min_severity)
        if args.html:
            print(f"HTML report: {args.html}")
    readable = [r for r in results if r.error is None]
    fatal = not readable or any(r.error is not None and r.path in named for r in results)
    for r in results:
        if r.error is not None:
            kind = "error" if fatal or r.path in named else "skipped"
            print(f"trainguard doctor: {kind}: {one_line(r.error)}", file=sys.stderr)
    if fatal:
        return 2
    worst = max((r.worst for r in readable if r.worst is not None), default=None)
    return 1 if worst is not None and worst >= args.fail_on else 0


def _diagnose_all(files, overrides, diagnose_file, show_progress: bool):
    if len(files) < _PROGRESS_FROM or not show_progress:
        return [diagnose_file(f, overrides) for f in files]
    from rich.progress import Progress

    results = []
    with Progress(transient=True) as progress:
        task = progress.add_task("reading logs", total=len(files))
        for f in files:
            progress.update(task, description=f"reading {f.name}")
            results.append(diagnose_file(f, overrides))
            progress.advance(task)
    return results


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)
