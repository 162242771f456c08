"""``module_mode``: BatchNorm or Dropout modules left in inference (eval) mode while the model trains.

A BatchNorm layer in eval mode normalizes with its running statistics, which do not update, so the network
trains without normalization; Dropout in eval mode drops nothing. Seed case 000 (a custom Keras loop that never
set the learning phase) exploded this way; PyTorch's equivalent is a ``model.eval()`` left on before a training
loop (PyTorch docs, ``nn.Module.train``/``eval``). The adapter samples the modes every few steps and lists the
modules found in eval mode while gradients flow (``StepStats.eval_mode_modules``).

Freezing BatchNorm on purpose (fine-tuning with frozen statistics) is legitimate, so the finding is INFO
(docs/severity.md: evidence, not harm in itself); the diagnosis (``bn_inference_mode``) weighs it with the
run's instability or stall. One finding per episode: it re-arms when a sampled step finds every module in
training mode.
"""
from __future__ import annotations

from typing import NamedTuple

from trainguard.core.detector import Detector
from trainguard.core.findings import Finding, Severity
from trainguard.core.stats import StepStats

__all__ = ["module_mode", "ModuleModeState"]

_LISTED = 8  # module names kept in the evidence


class ModuleModeState(NamedTuple):
    in_episode: bool


def module_mode() -> Detector:
    def init() -> ModuleModeState:
        return ModuleModeState(False)

    def update(stats: StepStats, state: ModuleModeState):
        modules = stats.eval_mode_modules
        if modules is None:  # not sampled at this step
            return (), state
        if not modules:
            return (), ModuleModeState(False) if state.in_episode else state
        if state.in_episode:
            return (), state
        evidence = {"modules": list(modules[:_LISTED]), "count": len(modules)}
        shown = ", ".join(modules[:3]) + (f" and {len(modules) - 3} more" if len(modules) > 3 else "")
        message = f"{len(modules)} module(s) in eval mode while training: {shown}"
        return (Finding("eval_mode_modules", Severity.INFO, stats.step, modules[0], evidence, message),), \
            ModuleModeState(True)

    return Detector("module_mode", init, update)
