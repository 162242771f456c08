"""What ``trainguard diff`` finds, as plain data: the same structure for ``--json``, the HTML page and the API.

The JSON schema (``trainguard.diff`` version 1) is documented field by field in docs/diff.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SCHEMA", "SCHEMA_VERSION", "CATEGORIES", "Difference", "Cause", "RunInfo", "DiffResult", "format_value"]

SCHEMA = "trainguard.diff"
SCHEMA_VERSION = 1

# The ranking of what differs first within a step: what is fed to the step, then what the forward pass does,
# then the backward pass, then the update. A difference upstream explains the ones downstream of it.
CATEGORIES: tuple[str, ...] = ("data", "lr", "batch_size", "mode", "bn_stats", "loss", "gradient", "weight")


@dataclass(frozen=True)
class Difference:
    """One recorded quantity that differs beyond tolerance at one step.

    ``where`` is the parameter, buffer or module (None for a step-level quantity such as the loss).
    ``a``/``b`` are the two runs' values (a float, a fingerprint string, or a bool for "in eval mode");
    ``rel_diff`` is ``|a - b| / max(|a|, |b|, scale)`` (inf when one side is non-finite or missing), None
    for values that are not numbers.
    """

    step: int
    category: str
    quantity: str
    where: str | None
    a: Any
    b: Any
    rel_diff: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "category": self.category, "quantity": self.quantity, "where": self.where,
                "a": _json_value(self.a), "b": _json_value(self.b), "rel_diff": _json_value(self.rel_diff)}


@dataclass(frozen=True)
class Cause:
    """The known cause the first differences point to. ``code`` is one of docs/diff.md's cause codes."""

    code: str
    message: str
    fix: str
    doc: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "fix": self.fix, "doc": self.doc,
                "evidence": _json_value(self.evidence)}


@dataclass(frozen=True)
class RunInfo:
    path: str
    framework: str
    preset: str | None
    steps: int
    first_step: int
    last_step: int
    status: str | None  # the end record's status; None when the run has no end record (crashed, still going)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class DiffResult:
    """The comparison of two run logs, ``a`` the reference and ``b`` the run under suspicion.

    ``first_divergence`` is the difference the cause points at (None when the runs agree); ``differences``
    lists every difference at that first step, ranked by :data:`CATEGORIES` then forward order.
    ``first_step_by_category`` gives, per category, the first compared step where it differs (None: never).
    ``layers`` gives, per parameter and buffer in forward order, the first step it differs. ``heatmap`` holds
    the largest relative difference per row (a ``layers`` name) and step of ``heatmap_steps`` (the compared
    steps with per-layer or buffer statistics in both runs), for the HTML heat map.
    """

    verdict: str  # "agree" or "part"
    rtol: float
    run_a: RunInfo
    run_b: RunInfo
    compared_steps: tuple[int, ...]
    layer_steps: int  # compared steps where both runs carry per-layer statistics
    first_divergence: Difference | None
    differences: tuple[Difference, ...]
    first_step_by_category: dict[str, int | None]
    first_inexact_step: int | None  # the first step where anything differs at all, within tolerance or not
    cause: Cause
    layers: tuple[tuple[str, int | None], ...]
    heatmap_steps: tuple[int, ...]
    heatmap: tuple[tuple[float, ...], ...]
    curves: dict[str, dict[str, tuple[float | None, ...]]]
    notes: tuple[str, ...] = ()

    @property
    def agree(self) -> bool:
        return self.verdict == "agree"

    @property
    def exit_code(self) -> int:
        return 0 if self.agree else 1

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document (docs/diff.md); the heat map and curves are left to the HTML page."""
        steps = self.compared_steps
        return {
            "schema": SCHEMA,
            "version": SCHEMA_VERSION,
            "verdict": self.verdict,
            "rtol": self.rtol,
            "runs": {"a": self.run_a.to_dict(), "b": self.run_b.to_dict()},
            "compared": {"steps": len(steps), "first": steps[0] if steps else None,
                         "last": steps[-1] if steps else None, "layer_steps": self.layer_steps},
            "first_divergence": self.first_divergence.to_dict() if self.first_divergence else None,
            "differences": [d.to_dict() for d in self.differences],
            "first_step_by_category": dict(self.first_step_by_category),
            "first_inexact_step": self.first_inexact_step,
            "cause": self.cause.to_dict(),
            "layers": [{"name": name, "first_step": step} for name, step in self.layers],
            "notes": list(self.notes),
        }


def _json_value(value: Any) -> Any:
    """Strict JSON has no NaN/Inf: write them as the run log does ("nan", "inf", "-inf")."""
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return value


def format_value(value: Any) -> str:
    """A recorded value as the console and HTML reports show it (a layer mode as train/eval)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "eval" if value else "train"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)
