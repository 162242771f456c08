"""What every guard shows of its :class:`~trainguard.core.session.Session`, written once.

The torch ``Guard``, the trainers' ``TrainerStepGuard`` and the Keras session each own one Session (directly or
through the guard they wrap) and expose its findings, actions, history, monitor and run log under the same
names; a guard inherits :class:`SessionView` and provides ``session``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainguard.core.actions import Action
    from trainguard.core.diagnosis import StatsHistory
    from trainguard.core.findings import Finding
    from trainguard.core.monitor import Monitor
    from trainguard.core.session import Session

__all__ = ["SessionView"]


class SessionView:
    """Read-only views of ``self.session`` (a :class:`~trainguard.core.session.Session`)."""

    session: Session

    @property
    def findings(self) -> list[Finding]:
        """Every finding so far, in the order raised (detectors' and the guard's own internal errors)."""
        return self.session.findings

    @property
    def actions(self) -> list[Action]:
        """Every action taken so far, each logged once its effect is measured."""
        return self.session.actions

    @property
    def history(self) -> StatsHistory:
        """The statistics kept for the diagnosis: the first steps, the recent ones, a thinned middle."""
        return self.session.history

    @property
    def monitor(self) -> Monitor:
        """The detectors' host."""
        return self.session.monitor

    @property
    def log(self) -> Any:
        """The run log's writer, or None (no log, or not the rank that writes it)."""
        return self.session.log
