"""What the doctor reports about a finished run: a finding with its cause and the fix for that cause."""
from __future__ import annotations

import math
from typing import Any, NamedTuple

from trainguard.core.causes import cause_doc_link
from trainguard.core.findings import Severity

__all__ = ["DoctorFinding", "CODES", "FIXES", "fix_for", "json_step", "json_safe"]

# Finding codes of the whole-series analyses; streaming detectors and run logs may add their own codes.
CODES = ("non_finite", "divergence", "loss_spike", "periodic_spike", "oscillation", "plateau", "overfitting",
         "parse")

FIXES: dict[str, str] = {
    "none": "Nothing to change in training; check how the log was written.",
    "unscaled_data": "Standardise the inputs and targets (zero mean, unit variance) before training.",
    "lr_too_high": "Lower the learning rate (try 3-10x lower), lengthen the warm-up, or clip the gradient norm.",
    "lr_too_low": "Raise the learning rate (an LR range test finds the largest stable one).",
    "vanishing_gradient": "Use a non-saturating activation (ReLU/GELU), He/Xavier initialisation, "
                          "normalisation layers or residual connections.",
    "exploding_gradient": "Clip the global gradient norm (e.g. torch.nn.utils.clip_grad_norm_(params, 1.0)) "
                          "and check the initialisation.",
    "batch_size_dependent_loss": "Drop the last partial batch (drop_last=True) or average the loss over the "
                                 "batch (reduction='mean') so a small batch does not weigh more.",
    "adam_epsilon": "Raise Adam's epsilon (1e-8 -> 1e-6 .. 1e-4) so near-zero second moments cannot blow "
                    "the update up, or use a decaying LR.",
    "bad_batch": "Find the batch at that step (fix the seed, log the batch indices) and check its data; "
                 "skipping the step or clipping gradients contains it.",
    "bn_inference_mode": "Keep BatchNorm layers in training mode while training (model.train()).",
    "dead_relu": "Lower the learning rate, use LeakyReLU/GELU, or re-initialise the dead units.",
    "saturated_activation": "Normalise the pre-activations or use a non-saturating activation.",
    "overfitting": "Stop at the best evaluation step (early stopping / keep the best checkpoint), add "
                   "regularisation (weight decay, dropout, augmentation) or more data.",
}


def fix_for(cause: str) -> str:
    """The fix text for a cause; it ends with the cause's documentation link."""
    text = FIXES.get(cause, "Read the cause's explanation for what to change.")
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

