"""``adam_epsilon``: Adam's second-moment estimate lags gradients that grew back after a long calm.

Evidence: the ``adam_update_rms`` findings (Wortsman et al. 2023: the per-tensor RMS of g/sqrt(v) far above 1
while the gradient norm is ordinary), strengthened when a loss spike, divergence or non-finite value follows
within ``follow_steps`` (Wortsman et al. saw spikes 1-8 steps after; the layer statistics are sampled, so the
window is wider). Seed case 002: a calm phase near the optimum, then the loss grows; a larger epsilon fixes it.
"""
from __future__ import annotations

from trainguard.core.diagnosis.cause import Cause
from trainguard.core.diagnosis.rules._make import make_cause
from trainguard.core.diagnosis.run_view import RunView
from trainguard.core.findings import Severity

__all__ = ["adam_epsilon"]


def adam_epsilon(view: RunView, follow_steps: int = 100) -> Cause | None:
    found = view.of("adam_update_rms", Severity.WARNING)
    if not found:
        return None
    first = found[0]
    followed = [f for f in view.instability if first.step - follow_steps <= f.step <= first.step + follow_steps]
    followed_nonfinite = [s for s in view.nonfinite_steps if first.step <= s <= first.step + follow_steps]
    evidence = {"step": first.step, "layer": first.where, "episodes": len(found),
                **{k: first.evidence[k] for k in ("adam_update_rms", "grad_norm", "reference_grad_norm",
                                                  "adam_sqrt_v_median") if k in first.evidence}}
    confidence = 0.7
    if followed or followed_nonfinite:
        confidence = 0.9
        evidence["followed_by"] = sorted({f.code for f in followed} | ({"non_finite"} if followed_nonfinite else set()))
    message = (f"Adam's update RMS reached {first.evidence.get('adam_update_rms', float('nan')):.3g} in "
               f"{first.where} at step {first.step} while the gradient norm was ordinary: the second-moment "
               f"estimate was too small for the gradients that came back")
    return make_cause(view, "adam_epsilon", confidence, evidence, message)
