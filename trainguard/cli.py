"""``trainguard`` command line. Each subcommand is one module in ``trainguard.commands`` with
``add_arguments(parser)`` and ``run(args) -> int``; this file only dispatches and contains errors."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from trainguard import __version__
from trainguard.commands.errors import one_line

# name -> (module, one-line help). Modules are imported only when their command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "report": ("trainguard.commands.report", "print a readable summary of a trainguard run log"),
    "demo": ("trainguard.commands.demo", "run the seed scenarios unguarded and guarded, and compare"),
    "diff": ("trainguard.commands.diff", "find where two runs part ways (first differing step, layer, cause)"),
    "doctor": ("trainguard.commands.doctor", "diagnose finished runs from their logs (CSV, JSONL, TensorBoard, HF)"),
}


class UserError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trainguard", description="Keep neural-network training healthy.")
    parser.add_argument("--version", action="version", version=f"trainguard {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        code = int(module.run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        return code
    except UserError as e:
        print(f"trainguard {args.command}: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"trainguard {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`trainguard doctor --json ... | head`): stop quietly as other
        # Unix tools do, and point stdout at /dev/null so the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool that died of it


if __name__ == "__main__":
    sys.exit(main())
