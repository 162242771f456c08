"""``trainguard demo``: runs every seed scenario unguarded and guarded. (Placeholder until the scenarios land.)"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--small", action="store_true", help="shorter runs, for CI")


def run(args: argparse.Namespace) -> int:
    print("trainguard demo: the seed scenarios are not built yet; see `trainguard report --help` meanwhile.")
    return 0
