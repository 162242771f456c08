"""The one training loop every scenario runs, unguarded or under a ``trainguard.Guard``, and its result.

A scenario builds its model, optimizer, data and loss, then calls :func:`train`. Unguarded, the loop calls
``optimizer.step()``; guarded, ``guard.step(loss, batch_size=..., inputs=x, targets=y, epoch=e)`` in its place,
exactly as the README tells a user to. The scenario then judges the trace (did its pathology show?) and
:func:`finish` packs a :class:`ScenarioResult`.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, NamedTuple

import torch

from trainguard.core.actions import Action
from trainguard.core.causes import CAUSES
from trainguard.core.findings import Finding
from trainguard.core.policies import TrainingStopped

__all__ = ["Scenario", "SIZES", "DEAD_AFTER", "DEAD_AFTER_GUARDED", "POLICY_FALLBACKS", "GuardUnavailable", "Trace", "ScenarioResult",
           "train", "judge_regression", "finish", "seeded", "minibatches", "check_size"]

SIZES = ("full", "small")
# An unguarded run whose loss stayed non-finite this many steps in a row is dead: the loop stops there. A
# guarded run gets longer, since its policy may be skipping steps on the way to a rollback; it stops itself
# (TrainingStopped) when it gives up, and the cap only ends runs that nothing repairs (policy "observe").
DEAD_AFTER = 3
DEAD_AFTER_GUARDED = 50
# When a policy is not offered by this build of trainguard, the guarded run falls back along this chain.
POLICY_FALLBACKS = {"auto": ("safe", "observe"), "safe": ("observe",)}

Batches = Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Scenario(NamedTuple):
    """One seed case: what it reproduces and how to run it.

    ``seed_file`` names the user report in ``shared/seeds/`` it comes from; ``cause`` is the code (from
    ``trainguard.core.causes.CAUSES``) a correct diagnosis gives; ``healthy_twin`` says the one thing the healthy
    twin changes. ``run(healthy=False, guard_policy=None, log=None, size="full") -> ScenarioResult``.
    """

    name: str
    seed_id: str
    seed_file: str
    cause: str
    description: str
    healthy_twin: str
    run: Callable[..., ScenarioResult]

    def check(self) -> None:
        if self.cause not in CAUSES:
            raise ValueError(f"scenario {self.name}: unknown cause code {self.cause!r}")


class GuardUnavailable(RuntimeError):
    """``trainguard.Guard`` cannot be imported in this installation (the message says why)."""


@dataclass
class Trace:
    """What one training run produced, step by step (index i is the i-th optimizer step)."""

    losses: list[float] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    seconds: float = 0.0
    stopped: str | None = None  # why the loop ended early, if it did
    policy_used: str | None = None
    findings: tuple[Finding, ...] = ()
    actions: tuple[Action, ...] = ()
    diagnosis: tuple[Any, ...] | None = None  # guard.diagnose()'s causes, when the guard has it
    notes: list[str] = field(default_factory=list)

    @property
    def first_nonfinite(self) -> int | None:
        return next((i for i, v in enumerate(self.losses) if not math.isfinite(v)), None)


@dataclass(frozen=True)
class ScenarioResult:
    """One run of one scenario.

    ``failed`` is the scenario's own verdict, "its pathology showed" (NaN, no learning, spikes at the partial
    batch...), and ``outcome`` says it in one line; ``metrics`` holds the numbers the verdict used.
    ``policy`` is the policy asked for (None: unguarded), ``policy_used`` the one that ran (see
    ``POLICY_FALLBACKS``); ``notes`` says why they differ and anything else the reader should know.
    """

    name: str
    healthy: bool
    policy: str | None
    policy_used: str | None
    losses: tuple[float, ...]
    final_loss: float | None
    nonfinite: bool
    diverged: bool
    failed: bool
    outcome: str
    seconds: float
    metrics: dict[str, float]
    findings: tuple[Finding, ...] = ()
    actions: tuple[Action, ...] = ()
    diagnosis: tuple[Any, ...] | None = None
    notes: tuple[str, ...] = ()
    stopped: str | None = None

    @property
    def steps(self) -> int:
        return len(self.losses)

    @property
    def top_cause(self) -> str | None:
        """The diagnosed top cause code ("none" for a clean diagnosis), or None when there was no diagnosis."""
        if self.diagnosis is None:
            return None
        return self.diagnosis[0].code if self.diagnosis else "none"


def check_size(size: str) -> None:
    if size not in SIZES:
        raise ValueError(f"unknown scenario size {size!r}; expected one of {', '.join(SIZES)}")


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Fixes torch's global RNG and runs on one intra-op thread, then gives the caller's RNG state and thread
    count back. One thread: these models are tiny, so threads cost more than they save (on 2 busy cores, tens
    of times more), and a fixed thread count keeps the float reductions, hence the runs, reproducible."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(threads)


def minibatches(x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator | None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled (when a generator is given) minibatches; the last one is partial when len(x) % batch_size."""
    order = torch.randperm(len(x), generator=generator) if generator is not None else torch.arange(len(x))
    for start in range(0, len(x), batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]


def _open_guard(model: torch.nn.Module, optimizer: torch.optim.Optimizer, policy: str, log: str | None,
                notes: list[str]) -> tuple[Any, str]:
    try:
        from trainguard import Guard
    except (ImportError, AttributeError) as e:
        raise GuardUnavailable(f"trainguard.Guard is not available: {e}") from None
    for candidate in (policy, *POLICY_FALLBACKS.get(policy, ())):
        try:
            return Guard(model, optimizer, policy=candidate, log=log), candidate
        except (ValueError, NotImplementedError, KeyError) as e:
            notes.append(f"policy {candidate!r} unavailable ({e})")
    raise GuardUnavailable("; ".join(notes))


def train(*, model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: Batches, loss_fn: LossFn,
          epochs: int, guard_policy: str | None = None, log: str | None = None) -> Trace:
    """Runs ``epochs`` passes of ``batches(epoch)``; ``loss_fn(x, y)`` runs the model and returns the loss.

    The model's train/eval mode is left as the scenario set it (seed 000's bug is a mode left wrong). The loop
    stops early when the loss has been non-finite ``DEAD_AFTER`` (guarded: ``DEAD_AFTER_GUARDED``) steps in a
    row, or when the guard's policy raises ``TrainingStopped``.
    """
    trace = Trace()
    guard = None
    dead_after = DEAD_AFTER
    if guard_policy is not None:
        guard, trace.policy_used = _open_guard(model, optimizer, guard_policy, log, trace.notes)
        dead_after = DEAD_AFTER_GUARDED
    start = time.perf_counter()
    nonfinite_run = 0
    try:
        for epoch in range(epochs):
            for x, y in batches(epoch):
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(x, y)
                loss.backward()
                if guard is None:
                    optimizer.step()
                else:
                    guard.step(loss, batch_size=len(x), inputs=x, targets=y, epoch=epoch)
                value = float(loss.detach())
                trace.losses.append(value)
                trace.epochs.append(epoch)
                trace.batch_sizes.append(len(x))
                nonfinite_run = 0 if math.isfinite(value) else nonfinite_run + 1
                if nonfinite_run >= dead_after:
                    trace.stopped = f"loss non-finite {dead_after} steps in a row"
                    return trace
    except TrainingStopped as stop:
        trace.stopped = f"stopped by the guard: {stop}"
    finally:
        trace.seconds = time.perf_counter() - start
        if guard is not None:
            _collect_guard(guard, trace)
    return trace


def _collect_guard(guard: Any, trace: Trace) -> None:
    guard.close("stopped" if trace.stopped else "ok")
    trace.findings = tuple(guard.findings)
    trace.actions = tuple(guard.actions)
    if hasattr(guard, "diagnose"):
        trace.diagnosis = tuple(guard.diagnose())
    else:
        trace.notes.append("this build's guard has no diagnose(); the top finding stands in for the cause")


def judge_regression(trace: Trace, target_variance: float, learned_fraction: float
                     ) -> tuple[bool, str, dict[str, float]]:
    """The verdict of a regression run: failed when its loss went non-finite or ended above
    ``learned_fraction`` of the targets' variance (a fraction, so runs on raw and scaled targets compare)."""
    losses = trace.losses
    first_bad = trace.first_nonfinite
    start = losses[0] if losses else math.nan
    final = losses[-1] if losses else math.nan
    peak = max((v for v in losses if math.isfinite(v)), default=math.nan)
    relative = final / target_variance
    if first_bad is not None:
        outcome = f"non-finite at step {first_bad} (loss {start:.2g} -> {peak:.2g} -> nan)"
    else:
        outcome = f"loss {start:.2g} -> {final:.2g} ({100 * relative:.2g}% of var(y))"
    failed = first_bad is not None or not relative < learned_fraction
    metrics = {"first_loss": start, "final_loss": final, "peak_loss": peak, "loss_over_target_variance": relative,
               "first_nonfinite_step": float(first_bad) if first_bad is not None else math.nan}
    return failed, outcome, metrics


def finish(name: str, healthy: bool, policy: str | None, trace: Trace, *, failed: bool, outcome: str,
           metrics: dict[str, float]) -> ScenarioResult:
    """Packs a trace and the scenario's verdict. ``diverged``: non-finite, or ended above where it started."""
    losses = tuple(trace.losses)
    finite = [v for v in losses if math.isfinite(v)]
    nonfinite = len(finite) < len(losses)
    final = losses[-1] if losses else None
    diverged = nonfinite or (final is not None and bool(finite) and final > finite[0])
    return ScenarioResult(
        name=name, healthy=healthy, policy=policy, policy_used=trace.policy_used, losses=losses, final_loss=final,
        nonfinite=nonfinite, diverged=diverged, failed=failed, outcome=outcome, seconds=trace.seconds,
        metrics=metrics, findings=trace.findings, actions=trace.actions, diagnosis=trace.diagnosis,
        notes=tuple(trace.notes), stopped=trace.stopped)
