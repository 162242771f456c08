"""``restore_mode``: BatchNorm/Dropout modules found in eval mode while the model trains.

A BatchNorm in eval mode normalizes with frozen running statistics and Dropout drops nothing (seed case 000;
PyTorch ``nn.Module.train``/``eval``). With ``restore=True`` (``policy="auto"``) the adapter puts them back in
train mode; otherwise it only warns, loudly, once per set of modules, since freezing BatchNorm on purpose for
fine-tuning is legitimate.
"""
from __future__ import annotations

from typing import NamedTuple

from trainguard.core.actions import Action
from trainguard.core.policies.plan import Findings, Plan, Policy
from trainguard.core.stats import StepStats

__all__ = ["restore_mode", "RestoreModeState"]


class RestoreModeState(NamedTuple):
    reported: tuple[str, ...]  # the modules last reported (warned about or restored)


def restore_mode(restore: bool = True) -> Policy:
    def init() -> RestoreModeState:
        return RestoreModeState(())

    def update(stats: StepStats, findings: Findings, plan: Plan, state: RestoreModeState):
        modules = stats.eval_mode_modules
        if not modules:
            return plan, (RestoreModeState(()) if modules == () else state)
        if restore:
            plan = plan._replace(restore_modules=tuple(dict.fromkeys(plan.restore_modules + tuple(modules))))
        if tuple(modules) != state.reported:
            plan = plan.log(Action("restore_mode", stats.step, "eval_mode_modules",
                                   {"modules": list(modules), "restored": restore}, {}))
            state = RestoreModeState(tuple(modules))
        return plan, state

    return Policy("restore_mode", init, update)
