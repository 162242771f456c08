"""A diagnosed cause and its fix, as plain values (JSON-ready through ``to_dict``)."""
from __future__ import annotations

from typing import Any, NamedTuple

from trainguard.core.causes import CAUSES, cause_doc_link

__all__ = ["Fix", "Cause", "top_code"]

FRAMEWORKS = ("torch", "keras")


class Fix(NamedTuple):
    """What to change: a one-line summary, a PyTorch snippet, a Keras snippet, and the catalogue entry.

    ``str(fix)`` is the text for ``framework`` (the user's), ending with the link to docs/causes.md.
    """

    summary: str
    torch: str
    keras: str
    link: str
    framework: str = "torch"

    def text(self, framework: str | None = None) -> str:
        framework = framework or self.framework
        snippet = self.keras if framework == "keras" else self.torch
        return f"{self.summary}\n\n{snippet.rstrip()}\n\nSee {self.link}"

    def __str__(self) -> str:
        return self.text()

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()


class Cause(NamedTuple):
    """One root cause, ranked by ``confidence`` (0..1).

    ``evidence`` holds the numbers, steps and layers the rule fired on; ``evidence["explained_by"]`` names a
    higher-ranked cause that accounts for this one (it is then contributing, not the root).
    """

    code: str
    confidence: float
    evidence: dict[str, Any]
    fix: Fix
    message: str

    @property
    def doc(self) -> str:
        return cause_doc_link(self.code)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "confidence": round(self.confidence, 3), "message": self.message,
                "evidence": self.evidence, "fix": self.fix.to_dict(), "doc": self.doc}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Cause:
        code = str(d["code"])
        if code not in CAUSES:
            raise ValueError(f"unknown cause code {code!r}")
        return cls(code, float(d["confidence"]), dict(d.get("evidence") or {}), Fix(**d["fix"]),
                   str(d.get("message", "")))


def top_code(causes: list[Cause] | tuple[Cause, ...]) -> str:
    """The code to show for a whole run: the top cause's, or ``"none"`` when nothing was diagnosed."""
    return causes[0].code if causes else "none"
