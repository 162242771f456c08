"""Containment of a guard's own failures, shared by the torch and Keras adapters (framework-free).

The guard must never break a healthy run because of its own bug: a part that raises (statistics, detectors,
repairer, run log...) is switched off, the failure is reported once (a RuntimeWarning, an ``internal_error``
event with the traceback in the run log, and a ``guard_internal_error`` finding), and training carries on.
"""
from __future__ import annotations

import traceback
import warnings
from typing import Any, Callable

from trainguard.core.findings import Finding, Severity
from trainguard.io.runlog import RunLogWriter

__all__ = ["INTERNAL_ERROR", "Contained"]

INTERNAL_ERROR = "guard_internal_error"


class Contained:
    """Mixin for a guard. The host class sets ``_disabled: set[str]``, ``_findings: list[Finding]`` and
    ``log: RunLogWriter | None``, names its current step in ``_current_step`` and may react to a part being
    switched off in ``_on_part_disabled``."""

    _disabled: set[str]
    _findings: list[Finding]
    log: RunLogWriter | None

    def _current_step(self) -> int:
        raise NotImplementedError

    def _on_part_disabled(self, part: str) -> None:
        """Called once when ``part`` fails, before it is reported (e.g. to remove its hooks)."""

    def _try(self, part: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, or None once ``part`` has failed (now or before)."""
        if part in self._disabled:
            return None
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 - containment
            self._contain(part, e)
            return None

    def _contain(self, part: str, error: BaseException, step: int | None = None) -> None:
        """Switches ``part`` off and reports the failure once (warning, run-log event, finding)."""
        if part in self._disabled:
            return
        self._disabled.add(part)
        self._on_part_disabled(part)
        step = self._current_step() if step is None else step
        message = (f"trainguard: internal error in its {part} at step {step} ({type(error).__name__}: {error}); "
                   f"{part} switched off, training continues unchanged")
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        finding = Finding(INTERNAL_ERROR, Severity.WARNING, step, part,
                          {"part": part, "error": type(error).__name__, "detail": str(error)}, message)
        self._findings.append(finding)
        if self.log is not None and "run log" not in self._disabled:
            try:
                self.log.event("internal_error", step, part=part, error=type(error).__name__, message=str(error),
                               traceback="".join(traceback.format_exception(error)))
                self.log.finding(finding)
            except Exception:  # noqa: BLE001 - the log itself is broken: stop writing to it, say nothing more
                self._disabled.add("run log")
