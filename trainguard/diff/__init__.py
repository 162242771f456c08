"""``trainguard diff``: align two run logs by step and find where, and why, they part ways.

Pure numpy/stdlib on run logs: no framework is imported here, so diff runs wherever the logs are.
"""
from __future__ import annotations

import sys
import types
from typing import Any

from trainguard.diff.api import diff
from trainguard.diff.causes import DIFF_CAUSES
from trainguard.diff.compare import DEFAULT_RTOL
from trainguard.diff.load import DiffInputError
from trainguard.diff.result import CATEGORIES, Cause, DiffResult, Difference, RunInfo

__all__ = ["diff", "DiffResult", "Difference", "Cause", "RunInfo", "DiffInputError", "DEFAULT_RTOL",
           "CATEGORIES", "DIFF_CAUSES"]


class _CallableModule(types.ModuleType):
    """``trainguard.diff(a, b)`` is the public API, and ``trainguard.diff`` is also this package: once a submodule
    is imported, Python binds the package to that name, so the package itself answers the call."""

    def __call__(self, a: Any, b: Any, **options: Any) -> DiffResult:
        return diff(a, b, **options)


sys.modules[__name__].__class__ = _CallableModule
