"""``adam_update``: Adam's update RMS far above 1 while the gradient itself is of an ordinary size.

Rule (Wortsman et al., "Stable and low-precision training for large-scale vision-language models", 2023): the
per-tensor RMS of ``g / sqrt(v)`` stays near or below 1 while Adam's second-moment estimate ``v`` tracks the
squared gradients; when gradients that were tiny for a long time grow again, ``v`` lags (beta2 = 0.999 remembers
~1000 steps) and the RMS rises far above 1. Loss spikes follow 1-8 steps later. StableAdamW (same paper) clips
the update by ``max(1, RMS)``; raising epsilon bounds the division (seed case 002).

The detector fires (INFO: evidence for ``adam_epsilon``, docs/severity.md; the harm, a loss spike or a
divergence, is reported by the symptom detectors) when the largest per-tensor update RMS (``adam_lag_rms``: over
the entries whose v the parameters' dtype holds, so a float16 v that underflowed to 0 is not read as a lag) reaches ``max_rms`` (5, a margin
over the steady-state ~1) and the global gradient norm is *ordinary*: at most ``ordinary_factor`` (10) times the
largest norm seen in the first ``reference_steps`` (100) steps. A gradient far above that is an exploding
gradient, which the ``exploding_gradient`` detector reports. Steps before ``skip_first`` (50) are ignored: the
adapters bias-correct v (v / (1 - beta2^t)), but in the first steps it rests on a handful of gradients.
One finding per episode; it re-arms once the RMS has stayed below ``max_rms`` for ``rearm_after`` (25) steps.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from trainguard.core.detector import Detector
from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import StepStats

__all__ = ["adam_update", "AdamUpdateState"]


class AdamUpdateState(NamedTuple):
    seen: int  # steps observed
    reference_norm: float  # largest finite gradient norm in the first reference_steps steps (0 = none yet)
    in_episode: bool
    last_high_step: int  # last step at which the RMS was >= max_rms


def adam_update(max_rms: float = 5.0, ordinary_factor: float = 10.0, reference_steps: int = 100,
                skip_first: int = 50, rearm_after: int = 25) -> Detector:
    def init() -> AdamUpdateState:
        return AdamUpdateState(0, 0.0, False, -1)

    def update(stats: StepStats, state: AdamUpdateState):
        norm = stats.grad_norm
        reference = state.reference_norm
        if state.seen < reference_steps and norm is not None and math.isfinite(norm):
            reference = max(reference, norm)
        new_state = AdamUpdateState(state.seen + 1, reference, state.in_episode, state.last_high_step)
        rms_by_layer = [(rms, layer.name) for layer in stats.layers
                        if (rms := layer.lag_rms()) is not None and math.isfinite(rms)]
        if not rms_by_layer or state.seen < skip_first:
            return (), new_state
        rms, where = max(rms_by_layer)
        if rms < max_rms:
            cleared = stats.step - state.last_high_step >= rearm_after
            return (), new_state._replace(in_episode=state.in_episode and not cleared)
        new_state = new_state._replace(last_high_step=stats.step)
        ordinary = norm is None or reference == 0.0 or (math.isfinite(norm) and norm <= ordinary_factor * reference)
        if state.in_episode or not ordinary:
            return (), new_state
        evidence = {"adam_update_rms": rms, "layer": where, "grad_norm": norm, "reference_grad_norm": reference,
                    "layers_above": sum(1 for r, _ in rms_by_layer if r >= max_rms)}
        layer = next(l for l in stats.layers if l.name == where)
        if layer.adam_sqrt_v_median is not None:
            evidence["adam_sqrt_v_median"] = layer.adam_sqrt_v_median
        message = (f"Adam update RMS {rms:.3g} in {where} (steady state ~1) while the gradient norm is ordinary: "
                   f"the second-moment estimate lags the gradients")
        return (Finding("adam_update_rms", Severity.INFO, stats.step, where, evidence, message),), \
            new_state._replace(in_episode=True)

    return Detector("adam_update", init, update)

