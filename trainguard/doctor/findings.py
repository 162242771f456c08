"""What the doctor reports about a finished run: a finding with its cause and the fix for that cause."""
from __future__ import annotations

import math
from typing import Any, NamedTuple

from trainguard.core.causes import cause_doc_link
from trainguard.core.diagnosis.fixes import FIXES
from trainguard.core.findings import Severity

__all__ = ["DoctorFinding", "CODES", "fix_for", "json_step", "json_safe"]

# Finding codes of the whole-series analyses; streaming detectors and run logs may add their own codes.
CODES = ("non_finite", "loss_scale", "divergence", "loss_spike", "periodic_spike", "oscillation", "plateau",
         "overfitting", "large_lr", "parse")

def fix_for(cause: str) -> str:
    """The fix text for a cause (the diagnosis engine's summary, one catalogue for the guard and the doctor);
    it ends with the cause's documentation link."""
    text = FIXES[cause][0] if cause in FIXES else "Nothing to change in training; check how the log was written."
    return f"{text} See {cause_doc_link(cause)}"


def json_step(step: float) -> int | float:
    return int(step) if float(step).is_integer() else float(step)


class DoctorFinding(NamedTuple):
    """``step`` is the step the problem starts at (a spike's peak, a divergence's onset)."""

    code: str
    severity: Severity
    step: float
    cause: str
    evidence: dict[str, Any]
    message: str

    @property
    def fix(self) -> str:
        return fix_for(self.cause)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity.name.lower(), "step": json_step(self.step),
                "cause": self.cause, "evidence": json_safe(self.evidence), "fix": self.fix, "message": self.message}


def json_safe(value: Any) -> Any:
    """Evidence as strict JSON: numpy scalars as Python numbers, NaN/Inf as the strings "nan"/"inf"/"-inf"."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and hasattr(value, "dtype"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value

