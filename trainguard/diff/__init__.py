"""``trainguard diff``: align two run logs by step and find where, and why, they part ways.

Pure numpy/stdlib on run logs: no framework is imported here, so diff runs wherever the logs are.
"""
from __future__ import annotations

from trainguard.diff.api import diff
from trainguard.diff.causes import DIFF_CAUSES
from trainguard.diff.compare import DEFAULT_RTOL
from trainguard.diff.load import DiffInputError
from trainguard.diff.result import CATEGORIES, Cause, DiffResult, Difference, RunInfo

__all__ = ["diff", "DiffResult", "Difference", "Cause", "RunInfo", "DiffInputError", "DEFAULT_RTOL",
           "CATEGORIES", "DIFF_CAUSES"]
