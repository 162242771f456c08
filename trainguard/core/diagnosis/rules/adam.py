"""``adam_epsilon``: Adam's second-moment estimate lags gradients that grew back after a long calm.

Evidence: the ``adam_update_rms`` findings (Wortsman et al. 2023: the per-tensor RMS of g/sqrt(v) far above 1
while the gradient norm is ordinary), a cause (0.9) when a loss spike, divergence or non-finite value follows
within ``follow_steps`` (Wortsman et al. saw spikes 1-8 steps after; the layer statistics are sampled, so the
window is wider). Without that trouble only a candidate (0.4): the lag did the run no harm (the healthy corpus'
permuted-task switch: RMS 16 at the switch, and the run learns the new task), as an underflow without trouble is
no cause (below). Seed case 002: a calm phase near the optimum, then the loss grows; a larger epsilon fixes it.

The RMS peak lasts only as long as v needs to catch up (~10-20 steps) and can fall between two sampled steps.
The every-step statistics then show its mechanism instead (``calm_return``): with an Adam-family optimizer,
the gradient norm had sunk to <= 1/100 of its initial level for ``calm`` (50) steps, came back >= 100x above
that calm level (yet no higher than 10x its initial level: an ordinary gradient), and within ``follow_steps``
the loss rose >= 10x above its value at the return. A larger epsilon bounds exactly that step (Thilak et al.
2022 describe the same calm-then-spike pattern). Confidence 0.75 from that alone. The sampled update RMS around
the return joins the evidence (the last sample at or before it, the largest within ``follow_steps`` after);
when it crossed 1 there (Wortsman et al.'s signal: the squared gradients outgrew v, though below the finding's
margin of 5, as after a full-batch calm where the RMS had sunk to ~1e-3), both signals agree: 0.85.

A second moment that underflowed (``underflowed_second_moment``): a sampled tensor's update RMS >= ``IMPOSSIBLE_RMS``
(100) at any step, the first included. Adam bounds its bias-corrected step: by Cauchy-Schwarz,
``|m / sqrt(v)| <= sqrt(sum_k a_k^2 / b_k)`` for the moments' weights a_k = (1 - b1) b1^k, b_k = (1 - b2) b2^k,
about 7 at (0.9, 0.999) and 23 at b2 = 0.9999 (Kingma & Ba 2015, sec. 2.1, bound the step by ~lr the same way);
the healthy corpus' largest is 4. Far above that, v holds zeros where the gradient is not zero: in float16 a
squared gradient below ~6e-8 rounds to 0 (Micikevicius et al. 2018, "Mixed precision training"), and an epsilon
of 1e-7 or 1e-8 no longer bounds the division (keras-team/keras#11860: float16 Adam goes NaN at the second step,
fixed by epsilon 1e-4). With a non-finite value or an instability within ``follow_steps``: 0.9; without trouble,
no cause (an underflow whose updates the run survived did no harm).
"""
from __future__ import annotations

import math

import numpy as np

from trainguard.core.diagnosis.cause import Cause
from trainguard.core.diagnosis.rules._make import CANDIDATE, make_cause
from trainguard.core.diagnosis.run_view import RunView
from trainguard.core.diagnosis.signals import blow_up_after_calm

__all__ = ["adam_epsilon", "calm_return", "underflowed_second_moment"]

IMPOSSIBLE_RMS = 100.0


def adam_epsilon(view: RunView, follow_steps: int = 100) -> Cause | None:
    underflow = underflowed_second_moment(view, follow_steps)
    if underflow is not None:
        message = (f"Adam's update RMS reached {underflow['adam_update_rms']:.3g} in {underflow['layer']} at step "
                   f"{underflow['step']}, far beyond the ~7 Adam's own arithmetic allows, and the run then "
                   f"{'went non-finite' if underflow['followed_by'] == ['non_finite'] else 'turned unstable'}: "
                   f"the second moment underflowed (float16?) and epsilon is too small to bound the division")
        return make_cause(view, "adam_epsilon", 0.9, underflow, message)
    found = view.of("adam_update_rms")
    if not found:
        returned = calm_return(view, follow_steps=follow_steps)
        if returned is None:
            return _from_loss_alone(view)
        blew_up = "went non-finite" if returned["went_non_finite"] else f"rose {returned['loss_rise']:.3g}x"
        before, after = returned.get("update_rms_before"), returned.get("update_rms_after")
        crossed = before is not None and after is not None and before < 1 <= after
        rms_said = f" (Adam's update RMS {before:.2g} -> {after:.2g})" if crossed else ""
        message = (f"with Adam, the gradient norm came back {returned['return_factor']:.3g}x above its calm level "
                   f"at step {returned['step']} and the loss then {blew_up}{rms_said}: the second-moment "
                   f"estimate, shrunk by the calm phase, lagged the returning gradients")
        returned["separated_by"] = "the gradient norm came back from a long calm and the loss then blew up"
        return make_cause(view, "adam_epsilon", 0.85 if crossed else 0.75, returned, message)
    first = found[0]
    followed = [f for f in view.instability if first.step - follow_steps <= f.step <= first.step + follow_steps]
    followed_nonfinite = [s for s in view.nonfinite_steps if first.step <= s <= first.step + follow_steps]
    evidence = {"step": first.step, "layer": first.where, "episodes": len(found),
                "separated_by": "Adam's update RMS far above 1 while the gradient norm was ordinary",
                **{k: first.evidence[k] for k in ("adam_update_rms", "grad_norm", "reference_grad_norm",
                                                  "adam_sqrt_v_median") if k in first.evidence}}
    confidence = CANDIDATE
    if followed or followed_nonfinite:
        confidence = 0.9
        evidence["followed_by"] = sorted({f.code for f in followed} | ({"non_finite"} if followed_nonfinite else set()))
    message = (f"Adam's update RMS reached {first.evidence.get('adam_update_rms', float('nan')):.3g} in "
               f"{first.where} at step {first.step} while the gradient norm was ordinary: the second-moment "
               f"estimate was too small for the gradients that came back"
               + ("" if confidence > CANDIDATE else "; no instability followed, so it did the run no visible harm"))
    return make_cause(view, "adam_epsilon", confidence, evidence, message)


def _from_loss_alone(view: RunView) -> Cause | None:
    """From a log without per-layer statistics, the doctor's clues on a divergence or a NaN: a long calm phase
    whose gradient norms shrank >= 5x, then the blow-up (0.6: an LR too high or an explosion shows no such calm
    shrink first); with no gradient norm logged, a long calm then an abrupt blow-up (0.55), provided the calm
    came after progress. The second moment shrinks with gradients that shrink as the loss converges (seed 002,
    Stack Overflow 42327543: "haywire after 200k batches" of a loss learned down); a loss stuck from the start
    (``course.stall_from_start``) was calm without converging, and a recurrent network's gradient explodes at a
    cliff of the loss surface whatever came before (Pascanu, Mikolov & Bengio 2013, sec. 3; bittensor#229: an
    LM stuck near ln V, then NaN under SGD): there Adam's epsilon is one candidate (0.4)."""
    shrunk = next((f for f in view.findings if f.code in ("divergence", "non_finite") and f.evidence.get("calm")
                   and f.evidence.get("shrinking")), None)
    if shrunk is not None:
        evidence = {**shrunk.evidence, "separated_by": "a long calm phase whose gradient norms shrank, then the blow-up"}
        message = (f"the loss blew up at step {shrunk.step} after a long calm phase whose gradient norms shrank to "
                   f"{evidence.get('grad_norm_shrink', 0):.2g}x: with Adam, its second moment lags")
        return make_cause(view, "adam_epsilon", 0.6, evidence, message)
    blow_up = blow_up_after_calm(view)
    if blow_up is None:
        return None
    if view.stall is not None:
        message = (f"the loss blew up abruptly at step {blow_up.step} after being stuck from the start (no gradient "
                   f"norm logged); a calm that never converged does not shrink Adam's second moment, so Adam's "
                   f"epsilon is one candidate among the causes of a blow-up")
        return make_cause(view, "adam_epsilon", CANDIDATE, {**blow_up.evidence, "stall": view.stall}, message)
    message = (f"the loss blew up abruptly at step {blow_up.step} after a long calm phase (no gradient norm "
               f"logged): with Adam, a second moment shrunk by the calm lags the returning gradients")
    return make_cause(view, "adam_epsilon", 0.55, dict(blow_up.evidence), message)


def calm_return(view: RunView, calm: int = 50, follow_steps: int = 100) -> dict | None:
    """The first step where an Adam run's gradient norm came back from a long calm and the loss then blew up."""
    if not any(layer.adam_update_rms is not None for s in view.sampled for layer in s.layers):
        return None
    norms, losses, steps = view.grad_norms, view.losses, view.steps
    finite = norms[np.isfinite(norms)]
    if len(norms) <= calm or len(finite) < 10:
        return None
    initial = float(np.median(finite[:10]))
    # A non-finite norm counts as large, so a window holding one is not calm.
    windows = np.lib.stride_tricks.sliding_window_view(np.where(np.isfinite(norms), norms, np.inf), calm)[:-1]
    calm_levels = np.median(windows, axis=1)
    now = norms[calm:]
    with np.errstate(invalid="ignore"):
        # A calm level of exactly 0 (a dead network) has no "100x above" to return to.
        hits = np.flatnonzero((calm_levels > 0) & (calm_levels <= initial / 100) & (now >= 100 * calm_levels)
                              & (now <= 10 * initial))
    for i in hits + calm:
        after = losses[(steps > steps[i]) & (steps <= steps[i] + follow_steps)]
        at_return = losses[i]
        if not (np.isfinite(at_return) and at_return > 0 and len(after)):
            continue
        went_non_finite = not bool(np.isfinite(after).all())
        rise = float(np.nanmax(after) / at_return) if np.isfinite(after).any() else None
        if went_non_finite or (rise is not None and rise >= 10):
            level = float(calm_levels[i - calm])
            return {"step": int(steps[i]), "calm_grad_norm": level, "grad_norm": float(norms[i]),
                    "initial_grad_norm": initial, "return_factor": float(norms[i] / level),
                    "loss_at_return": float(at_return), "loss_rise": rise, "went_non_finite": went_non_finite,
                    **_update_rms_around(view, int(steps[i]), follow_steps)}
    return None


def _update_rms_around(view: RunView, step: int, follow_steps: int) -> dict:
    """The largest per-tensor Adam update RMS at the last sample at or before ``step``, and the largest one
    sampled within ``follow_steps`` after it (each key only when such a sample exists)."""
    by_step = []
    for s in view.sampled:
        rms = [l.adam_update_rms for l in s.layers if l.adam_update_rms is not None and np.isfinite(l.adam_update_rms)]
        if rms:
            by_step.append((s.step, max(rms)))
    before = [r for t, r in by_step if t <= step]
    after = [r for t, r in by_step if step < t <= step + follow_steps]
    return {**({"update_rms_before": float(before[-1])} if before else {}),
            **({"update_rms_after": float(max(after))} if after else {})}


def underflowed_second_moment(view: RunView, follow_steps: int = 100) -> dict | None:
    """The first sampled step where a tensor with a finite, non-zero gradient had an Adam update RMS >=
    ``IMPOSSIBLE_RMS``, when a non-finite value or an instability followed within ``follow_steps``."""
    for s in view.sampled:
        over = [l for l in s.layers if l.adam_update_rms is not None and math.isfinite(l.adam_update_rms)
                and l.adam_update_rms >= IMPOSSIBLE_RMS and l.grad_norm is not None and math.isfinite(l.grad_norm)
                and l.grad_norm > 0]
        if not over:
            continue
        worst = max(over, key=lambda l: l.adam_update_rms)
        nonfinite = [t for t in view.nonfinite_steps if s.step <= t <= s.step + follow_steps]
        unstable = sorted({f.code for f in view.instability if s.step <= f.step <= s.step + follow_steps})
        if not nonfinite and not unstable:
            return None
        return {"step": s.step, "layer": worst.name, "adam_update_rms": float(worst.adam_update_rms),
                "adam_sqrt_v_median": worst.adam_sqrt_v_median, "grad_norm": float(worst.grad_norm),
                "tensors_above": len(over), "followed_by": ["non_finite"] if nonfinite else unstable,
                **({"non_finite_step": nonfinite[0]} if nonfinite else {}),
                "separated_by": "Adam's update RMS beyond what Adam's arithmetic allows (a second moment that "
                                "underflowed), then the blow-up"}
    return None
