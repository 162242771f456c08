"""``trainguard diff RUN_A RUN_B``: where two runs part ways, and why.

Exit codes: 0 the runs agree within tolerance, 1 they part, 2 the input cannot be compared (one-line message).
"""
from __future__ import annotations

import argparse
import json
import math
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trainguard.diff.compare import DEFAULT_RTOL

    parser.add_argument("run_a", metavar="RUN_A", help="the reference run log (e.g. the model.fit run)")
    parser.add_argument("run_b", metavar="RUN_B", help="the run log under suspicion (e.g. the custom loop)")
    parser.add_argument("--rtol", type=float, default=DEFAULT_RTOL,
                        help=f"relative tolerance per recorded quantity (default {DEFAULT_RTOL:g}, suited to float32)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON (schema in docs/diff.md)")
    parser.add_argument("--html", metavar="PATH", help="also write a self-contained HTML page: both runs' curves "
                                                       "and a per-layer divergence heat map")


def run(args: argparse.Namespace) -> int:
    from trainguard.cli import UserError
    from trainguard.diff import DiffInputError, diff

    if not math.isfinite(args.rtol) or args.rtol < 0:
        raise UserError(f"--rtol must be a finite number >= 0, got {args.rtol}")
    if args.html:
        from trainguard.io.files import InputError, check_output_path
        try:  # before the work, so a mistyped command costs nothing
            check_output_path(args.html, [args.run_a, args.run_b])
        except InputError as e:
            raise UserError(f"--html {e}") from None
    try:
        result = diff(args.run_a, args.run_b, rtol=args.rtol)
    except DiffInputError as e:
        raise UserError(str(e)) from None
    if args.html:
        from trainguard.diff.html import write_html

        try:
            write_html(result, args.html)
        except OSError as e:
            raise UserError(f"cannot write {args.html}: {e.strerror or e}") from None
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
    else:
        from trainguard.diff.console import print_diff

        print_diff(result)
        if args.html:
            print(f"HTML report: {args.html}")
    return result.exit_code
