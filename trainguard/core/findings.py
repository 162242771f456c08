"""Findings: what a detector reports, and how bad it is."""
from __future__ import annotations

from enum import IntEnum
from typing import Any, NamedTuple

__all__ = ["Severity", "Finding"]


class Severity(IntEnum):
    INFO = 10
    WARNING = 20
    ERROR = 30
    CRITICAL = 40

    @classmethod
    def parse(cls, name: str | int | Severity) -> Severity:
        if isinstance(name, (int, Severity)):
            return cls(name)
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown severity {name!r}; expected one of {', '.join(s.name.lower() for s in cls)}") from None


class Finding(NamedTuple):
    """One pathology seen at one step.

    ``where`` names the layer or module when the detector can tell (``"fc1.weight"``), else None.
    ``evidence`` holds the numbers the rule fired on, JSON-ready.
    """

    code: str
    severity: Severity
    step: int
    where: str | None
    evidence: dict[str, Any]
    message: str

    def to_dict(self) -> dict[str, Any]:
        d = self._asdict()
        d["severity"] = self.severity.name.lower()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        return cls(
            code=str(d["code"]),
            severity=Severity.parse(d["severity"]),
            step=int(d["step"]),
            where=d.get("where"),
            evidence=dict(d.get("evidence") or {}),
            message=str(d.get("message", "")),
        )
