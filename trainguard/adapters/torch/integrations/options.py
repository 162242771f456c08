"""What a trainer callback passes on to the guard it builds when training starts: the plain guard's arguments,
checked when the callback is made (not mid-fit), with the plain guard's messages."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trainguard.core.actions import Action
from trainguard.core.diagnosis import Cause
from trainguard.core.findings import Finding
from trainguard.core.policies import TrainingStopped, get_policy
from trainguard.core.presets import get_preset
from trainguard.core.session import check_guard_arguments

if TYPE_CHECKING:
    from trainguard.adapters.torch.integrations.trainer_step import TrainerStepGuard

__all__ = ["GuardOptions", "TrainerGuardResults"]


@dataclass(frozen=True)
class GuardOptions:
    """As :class:`trainguard.Guard`'s keyword arguments; the model, optimizer and scheduler come from the trainer."""

    policy: Any = "safe"
    log: Any = None
    preset: Any = "standard"
    detectors: Any = None
    fetch_every: int | None = None
    exporters: Any = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "exporters", check_guard_arguments(
            policy=self.policy, log=self.log, detectors=self.detectors, exporters=self.exporters))
        if isinstance(self.policy, str):
            get_policy(self.policy)
        get_preset(self.preset)
        if self.fetch_every is not None and (not isinstance(self.fetch_every, int) or isinstance(self.fetch_every, bool)
                                             or self.fetch_every < 1):
            raise ValueError(f"fetch_every must be a positive integer, got {self.fetch_every!r}")

    def as_kwargs(self) -> dict[str, Any]:
        return dict(policy=self.policy, log=self.log, preset=self.preset, detectors=self.detectors,
                    fetch_every=self.fetch_every, exporters=self.exporters)


class TrainerGuardResults:
    """What every trainer callback holds and shows: its checked options, the guard it builds when training starts,
    the stop a policy ordered, and the guard's findings, actions and diagnosis (empty before training)."""

    def __init__(self, options: GuardOptions):
        self.options = options
        self.guard: TrainerStepGuard | None = None
        self.stopped: TrainingStopped | None = None

    @property
    def findings(self) -> list[Finding]:
        return self.guard.findings if self.guard is not None else []

    @property
    def actions(self) -> list[Action]:
        return self.guard.actions if self.guard is not None else []

    def diagnose(self) -> list[Cause]:
        return self.guard.diagnose() if self.guard is not None else []
