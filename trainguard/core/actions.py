"""Actions: what a repair policy did, as written to the run log."""
from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["Action"]


class Action(NamedTuple):
    """One repair carried out at one step.

    ``kind`` is the action's name (``"skip_step"``, ``"clip"``, ``"rollback"``...), ``reason`` the code of the
    finding that caused it, ``params`` its settings and ``effect`` what it measurably changed
    (for example the loss before and after).
    """

    kind: str
    step: int
    reason: str | None
    params: dict[str, Any]
    effect: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Action:
        return cls(
            kind=str(d["kind"]),
            step=int(d["step"]),
            reason=d.get("reason"),
            params=dict(d.get("params") or {}),
            effect=dict(d.get("effect") or {}),
        )
