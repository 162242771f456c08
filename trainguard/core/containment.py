"""Containment of a guard's own failures, one switch per part (framework-free, shared by every adapter).

The guard must never break a healthy run because of its own bug: a part that raises (statistics, detectors,
the repair policy, the run log, an exporter...) is switched off alone, the failure is reported once (a
``RuntimeWarning``, an ``internal_error`` event with the traceback in the run log, and a ``guard_internal_error``
finding of severity WARNING: the run itself is fine but part of its monitoring is off, which the user must not
miss), and training carries on as if unguarded.
"""
from __future__ import annotations

import traceback
import warnings
from typing import Any, Callable

from trainguard.core.findings import Finding, Severity

__all__ = ["INTERNAL_ERROR", "RUN_LOG", "Containment"]

INTERNAL_ERROR = "guard_internal_error"
RUN_LOG = "run log"  # the part whose failure silences the reports of later failures in the log


class Containment:
    """Which parts of a guard are switched off, and the one place that switches one off.

    ``findings`` is the guard's list of findings (the internal-error findings are appended to it); ``step`` says
    the current step; ``log`` (a sink with ``event`` and ``finding``, or None) receives the reports. Callbacks
    registered with :meth:`on_disabled` run once when a part fails, before it is reported (e.g. to remove its
    hooks or to stand an effector down).
    """

    def __init__(self, findings: list[Finding], step: Callable[[], int]):
        self.disabled: set[str] = set()
        self.findings = findings
        self.log: Any = None
        self._step = step
        self._callbacks: list[Callable[[str], None]] = []

    def on_disabled(self, callback: Callable[[str], None]) -> None:
        self._callbacks.append(callback)

    def active(self, part: str) -> bool:
        return part not in self.disabled

    def run(self, part: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, or None once ``part`` has failed (now or before)."""
        if part in self.disabled:
            return None
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 - containment
            self.contain(part, e)
            return None

    def switch_off(self, part: str) -> None:
        """Switches ``part`` off without a report (a part the guard cannot run here, e.g. hooks on a compiled
        model)."""
        self.disabled.add(part)

    def contain(self, part: str, error: BaseException, step: int | None = None) -> None:
        """Switches ``part`` off and reports the failure once (warning, run-log event, finding)."""
        if part in self.disabled:
            return
        self.disabled.add(part)
        for callback in self._callbacks:
            try:
                callback(part)
            except Exception:  # noqa: BLE001 - a failing clean-up must not hide the report below
                pass
        step = self._step() if step is None else step
        message = (f"trainguard: internal error in its {part} at step {step} ({type(error).__name__}: {error}); "
                   f"{part} switched off, training continues unchanged")
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        finding = Finding(INTERNAL_ERROR, Severity.WARNING, step, part,
                          {"part": part, "error": type(error).__name__, "detail": str(error)}, message)
        self.findings.append(finding)
        if self.log is not None and RUN_LOG not in self.disabled:
            try:
                self.log.event("internal_error", step, part=part, error=type(error).__name__, message=str(error),
                               traceback="".join(traceback.format_exception(error)))
                self.log.finding(finding)
            except Exception:  # noqa: BLE001 - the log itself is broken: stop writing to it, say nothing more
                self.disabled.add(RUN_LOG)
