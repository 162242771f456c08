"""``grad_scaler``: a mixed-precision run whose dynamic loss scale collapses, or whose steps the scaler keeps
skipping.

Dynamic loss scaling (Micikevicius et al., "Mixed Precision Training", ICLR 2018, sec. 3.2; PyTorch's
``torch.amp.GradScaler``) multiplies the loss by a scale so that small float16 gradients do not underflow, skips
the update of a step whose scaled gradients overflowed, halves the scale, and doubles it again after
``growth_interval`` (2000) clean steps. Skips are routine: a few in a row at the start while the scale comes down
from its initial 2**16, then about one per growth interval (NVIDIA/apex#864: "every 2000 steps ... it should be
fine"). They are harm when they do not stop:

- **Scale collapsed** (WARNING) — the scale is below ``min_scale`` (1): the gradients overflow float16 even
  unscaled, so the scale can only keep halving while nothing trains (NVIDIA/apex#715 and #318: "reducing loss
  scale to 1.4e-303"). DeepSpeed's dynamic loss scaler stops the run at this floor (its ``min_loss_scale`` default
  1: "Current loss scale already at minimum"); fairseq raises ``FloatingPointError`` at 1e-4.
- **Most steps skipped** (WARNING) — at least ``skipped_share`` (half) of the last ``window`` (100) mixed-precision
  steps were skipped: half of the run's updates are thrown away, whatever the scale. The start's calibration
  skips at most ~log2 of the initial scale in a row (16 for GradScaler's 2**16, 24 for 2**24), far below 50.

Steps without a loss scale (no scaler) are not judged. One finding per episode; it re-arms after ``rearm_after``
(100) mixed-precision steps on which neither rule holds. Never an ERROR: a non-finite loss, or gradients that
overflow at a scale <= 1, are ``non_finite``'s.

>>> from trainguard.core.stats import StepStats
>>> det = grad_scaler()
>>> state = det.init()
>>> for step in range(120):  # an overflow every other step: the scale halves and doubles back
...     skipped = step % 2 == 0
...     found, state = det.update(StepStats(step=step, loss_scale=1024.0, scaler_skipped=skipped), state)
...     if found:
...         break
>>> found[0].step, found[0].severity.name, found[0].evidence["rule"]
(99, 'WARNING', 'skipped_most')
"""
from __future__ import annotations

import math
from typing import NamedTuple

from trainguard.core.detector import ARMED, Detector, Episode, episode_update
from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import StepStats

__all__ = ["grad_scaler", "GradScalerState"]


class GradScalerState(NamedTuple):
    skipped: int  # bit i set: the i-th most recent mixed-precision step was skipped (the last `window`)
    seen: int  # mixed-precision steps seen
    episode: Episode


def grad_scaler(min_scale: float = 1.0, window: int = 100, skipped_share: float = 0.5,
                rearm_after: int = 100) -> Detector:
    full = (1 << window) - 1
    needed = math.ceil(skipped_share * window)

    def init() -> GradScalerState:
        return GradScalerState(0, 0, ARMED)

    def update(stats: StepStats, state: GradScalerState):
        scale = stats.loss_scale
        if scale is None:
            return (), state
        skipped = ((state.skipped << 1) | stats.scaler_skipped) & full
        seen = state.seen + 1
        count = bin(skipped).count("1")
        rule = None
        if scale < min_scale:  # NaN compares False: a scale that is not a number says nothing
            rule = "scale_floor"
        elif seen >= window and count >= needed:
            rule = "skipped_most"
        report, episode = episode_update(state.episode, Severity.WARNING if rule else None, rearm_after)
        new_state = GradScalerState(skipped, seen, episode)
        if not report:
            return (), new_state
        recent = min(seen, window)
        evidence = {"rule": rule, "loss_scale": scale, "skipped_recent": count, "recent_steps": recent}
        if rule == "scale_floor":
            evidence["min_scale"] = min_scale
            message = (f"the mixed-precision loss scale fell to {scale:.3g} at step {stats.step} (below "
                       f"{min_scale:g}): the float16 gradients overflow even unscaled; {count} of the last "
                       f"{recent} steps were skipped")
        else:
            message = (f"the gradient scaler skipped {count} of the last {recent} steps at step {stats.step} "
                       f"(loss scale {scale:.3g}): those updates were thrown away")
        return (Finding("scaler_skips", Severity.WARNING, stats.step, None, evidence, message),), new_state

    return Detector("grad_scaler", init, update)
