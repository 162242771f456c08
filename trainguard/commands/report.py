"""``trainguard report RUN.jsonl``: a readable summary of a run log."""
from __future__ import annotations

import argparse

from trainguard.io.runlog import RunLogError, read_runlog


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runlog", help="a run log written by trainguard.Guard(..., log=PATH)")


def run(args: argparse.Namespace) -> int:
    from trainguard.cli import UserError
    from trainguard.report.console import print_run_summary

    try:
        log = read_runlog(args.runlog)
    except RunLogError as e:
        raise UserError(str(e)) from None
    print_run_summary(log)
    return 0
