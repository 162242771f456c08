"""The custom-loop lifecycle of a :class:`~trainguard.adapters.keras.optimizer.GuardedOptimizer`: the guard
starts on the optimizer's first update (or at once when it is given a built model) and reads the records after
each ``apply``. Under ``fit`` the callback drives the session instead (``host.session_args`` is None then).

Also the argument checks both Keras entry points make when built, with the torch guard's messages."""
from __future__ import annotations

from typing import Any

from trainguard.adapters.keras.session import KerasSession
from trainguard.core.policies import get_policy
from trainguard.core.presets import get_preset
from trainguard.core.session import check_guard_arguments

__all__ = ["run_session", "check_arguments"]


def check_arguments(policy: Any, log: Any, preset: Any, detectors: Any, exporters: Any) -> list[Any]:
    """One-line errors for bad arguments, before any training (``TypeError`` for a wrong type, ``ValueError``
    for an unknown name); returns the exporters as a list."""
    exporters = check_guard_arguments(policy="observe" if policy is None else policy, log=log, detectors=detectors,
                                      exporters=exporters)
    if policy is not None:
        get_policy(policy)
    get_preset(preset)
    return exporters


def run_session(optimizer: Any, batch_size: int | None, inputs: Any = None, targets: Any = None,
                drain: bool = True) -> None:
    """Creates the optimizer's own session on its first update, then feeds it each update's records."""
    host = optimizer.host
    if host.session is None and host.session_args is not None:
        host.session = KerasSession(optimizer, **host.session_args)
        host.session_args = None
    if drain and host.session is not None and host.session.owned_by_optimizer:
        if inputs is not None or targets is not None:
            host.session.see_batch(inputs, targets, batch_size)
        host.session.drain(batch_size=batch_size)
