"""``module_mode``: BatchNorm or Dropout modules left in inference (eval) mode while the model trains.

A BatchNorm layer in eval mode normalizes with its running statistics, which do not update, so the network
trains without normalization; Dropout in eval mode drops nothing. Seed case 000 (a custom Keras loop that never
set the learning phase) exploded this way; PyTorch's equivalent is a ``model.eval()`` left on before a training
loop (PyTorch docs, ``nn.Module.train``/``eval``). The adapter samples the modes every few steps and lists the
modules found in eval mode while gradients flow (``StepStats.eval_mode_modules``).

Freezing BatchNorm on purpose (fine-tuning with frozen statistics) is legitimate, so the first finding is INFO
(docs/severity.md: evidence, not harm in itself); the diagnosis (``bn_inference_mode``) weighs it with the
run's instability or stall. One finding per episode: it re-arms when a sampled step finds every module in
training mode. The second episode, after such a step, is a WARNING (and the last finding: the later ones are the
same leak): the modules go back and forth between the modes while
the model trains, which no deliberate freeze does (a freeze holds, or ends once when the layers are unfrozen). It
is the loop that evaluates mid-epoch and sets the model back to training mode only at the next epoch
(wkentaro/pytorch-fcn#57: "the training loss will suddenly become larger when a new epoch starts"), so part of
every epoch trains with Dropout off or BatchNorm frozen. It needs the modes sampled on both sides of such a
switch: a validation interval that is a multiple of the guard's mode cadence is always sampled in eval mode.
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
    episodes: int = 0  # episodes of eval mode seen, each ended by a sampled step with every module in train mode


def module_mode() -> Detector:
    def init() -> ModuleModeState:
        return ModuleModeState(False)

    def update(stats: StepStats, state: ModuleModeState):
        modules = stats.eval_mode_modules
        if modules is None:  # not sampled at this step
            return (), state
        if not modules:
            return (), state._replace(in_episode=False) if state.in_episode else state
        if state.in_episode:
            return (), state
        episodes = state.episodes + 1
        if episodes > 2:  # the switching was reported at the second episode: the later ones are the same leak
            return (), ModuleModeState(True, episodes)
        evidence = {"modules": list(modules[:_LISTED]), "count": len(modules)}
        shown = ", ".join(modules[:3]) + (f" and {len(modules) - 3} more" if len(modules) > 3 else "")
        message = f"{len(modules)} module(s) in eval mode while training: {shown}"
        severity = Severity.INFO
        if episodes > 1:
            severity = Severity.WARNING
            evidence.update(rule="switching", episodes=episodes)
            message += (f"; episode {episodes} of eval mode since the model trained in train mode: the loop switches"
                        f" the modes while it trains (an evaluation that does not set the model back to train mode)")
        return (Finding("eval_mode_modules", severity, stats.step, modules[0], evidence, message),), \
            ModuleModeState(True, episodes)

    return Detector("module_mode", init, update, light=True)
