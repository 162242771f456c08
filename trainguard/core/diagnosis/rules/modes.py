"""``bn_inference_mode``: BatchNorm/Dropout modules in eval mode while the model trains.

Evidence: the ``eval_mode_modules`` findings (``detectors.module_mode``). On its own, in a run that trains well,
it is more likely a deliberate freeze (fine-tuning) than a bug, so a note (0.4); with instability or a stalled loss it is the root cause (0.9): seed case 000, where
the same network trained with ``model.fit`` but exploded in a custom loop that left BatchNorm in inference mode.
"""
from __future__ import annotations

from trainguard.core.diagnosis.cause import Cause
from trainguard.core.diagnosis.rules._make import make_cause
from trainguard.core.diagnosis.run_view import RunView

__all__ = ["bn_inference_mode"]


def bn_inference_mode(view: RunView) -> Cause | None:
    found = view.of("eval_mode_modules")
    if not found:
        return None
    modules = sorted({m for f in found for m in f.evidence.get("modules", [f.where])})
    troubled = view.unstable or view.stalled
    evidence = {"modules": modules[:8], "count": max(f.evidence.get("count", 1) for f in found),
                "steps": [f.step for f in found][:8], "unstable_or_stalled": troubled,
                "separated_by": "modules measured in eval mode while gradients flow"}
    message = f"{evidence['count']} module(s) in eval mode during training ({', '.join(modules[:3])})"
    return make_cause(view, "bn_inference_mode", 0.9 if troubled else 0.4, evidence, message)
