"""The cause vocabulary: stable strings shared by the diagnosis engine, the doctor and the JSON outputs.

Each code has an entry in docs/causes.md.
"""
from __future__ import annotations

__all__ = ["CAUSES", "DOCS_URL", "cause_doc_link"]

CAUSES: tuple[str, ...] = (
    "none",
    "unscaled_data",
    "lr_too_high",
    "lr_too_low",
    "vanishing_gradient",
    "exploding_gradient",
    "batch_size_dependent_loss",
    "adam_epsilon",
    "bad_batch",
    "bn_inference_mode",
    "dead_relu",
    "saturated_activation",
    "overfitting",
    # Not a root cause: the evidence does not separate two or more candidates; the candidates, each with its
    # evidence and what would tell them apart, are in the cause's evidence (docs/causes.md#uncertain).
    "uncertain",
)

DOCS_URL = "docs/causes.md"


def cause_doc_link(code: str) -> str:
    """Where a cause is explained; every fix text trainguard prints ends with it."""
    if code not in CAUSES:
        raise ValueError(f"unknown cause code {code!r}")
    # The entry's heading is the code in backticks, which Markdown renderers anchor as the bare code.
    return f"{DOCS_URL}#{code}"
