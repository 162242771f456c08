"""The framework-free half of every guard: ``observe(stats) -> StepResult``.

A framework adapter measures a step into a :class:`StepStats` and hands it to :meth:`Session.observe`; the
session does the rest, the same way for every framework:

- keeps the bounded history the diagnosis reads (:class:`~trainguard.core.diagnosis.StatsHistory`: the first
  steps, the recent ones and a thinned middle, so a run of millions of steps keeps its start);
- runs the detectors (:class:`~trainguard.core.monitor.Monitor`);
- runs the repair policy and hands its :class:`Plan` to the adapter's :class:`Effector`, which carries it out on
  the framework; measures each action's effect on the steps after it (:class:`EffectTracker`);
- decides to stop (the policy gave up, or the effector could not carry out an order);
- writes every record to its sinks: the run log and the exporters (:class:`Sink`), and at close the diagnosis.

Each part is contained on its own (:class:`~trainguard.core.containment.Containment`): a part that raises is
switched off and reported once; training goes on as if unguarded.
"""
from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, Callable, Iterable, NamedTuple, Protocol, Sequence

from trainguard.core.actions import Action
from trainguard.core.containment import RUN_LOG, Containment
from trainguard.core.detector import Detector
from trainguard.core.detectors.overfitting import overfitting
from trainguard.core.diagnosis import Cause, StatsHistory, diagnose
from trainguard.core.findings import Finding
from trainguard.core.monitor import Monitor
from trainguard.core.policies.effects import EffectTracker
from trainguard.core.policies.plan import NO_STEP, Plan, Policy, Refusal
from trainguard.core.stats import StepStats
from trainguard.core.validation import Validation, training_level

__all__ = ["Session", "StepResult", "Sink", "Repair", "PolicyRepair", "Effector", "Carried", "NOTHING", "ExporterSink",
           "REPAIRER", "standing", "policy_name", "check_exporters", "check_guard_arguments"]

REPAIRER = "repairer"  # the part that runs the policy and its effector
RECENT_LIGHT = 512  # light steps kept for a finding that names one later (a spike is judged up to ~200 steps on)


class StepResult(NamedTuple):
    findings: tuple[Finding, ...]
    actions: tuple[Action, ...]  # actions whose effect is now measured (logged and in ``session.actions``)
    plan: Plan | None  # the standing orders from the next step on; None without a policy
    stop: str | None  # why training must stop now, else None


class Sink(Protocol):
    """Where records go: ``trainguard.io.runlog.RunLogWriter`` is one; an exporter is wrapped in :class:`ExporterSink`."""

    def step(self, stats: StepStats) -> None: ...

    def finding(self, finding: Finding) -> None: ...

    def action(self, action: Action) -> None: ...

    def event(self, kind: str, step: int | None = None, **data: Any) -> None: ...

    def close(self, status: str = "ok") -> None: ...


class ExporterSink:
    """An exporter (any callable taking a StepStats, Finding or Action; ``close()`` if it has one) as a sink."""

    def __init__(self, exporter: Callable[[Any], Any]):
        self.exporter = exporter
        self.name = getattr(exporter, "__name__", type(exporter).__name__)

    def step(self, stats: StepStats) -> None:
        self.exporter(stats)

    def finding(self, finding: Finding) -> None:
        self.exporter(finding)

    def action(self, action: Action) -> None:
        self.exporter(action)

    def validation(self, record: Validation) -> None:
        self.exporter(record)

    def event(self, kind: str, step: int | None = None, **data: Any) -> None:
        """Events are the run log's alone."""

    def close(self, status: str = "ok") -> None:
        close = getattr(self.exporter, "close", None)
        if callable(close):
            close()


class Carried(NamedTuple):
    """What an effector reports after carrying out a plan."""

    effects: dict[str, dict[str, Any]] = {}  # by action kind: merged into the effect of the plan's actions
    actions: tuple[Action, ...] = ()  # actions of its own (the batches skipped after a rollback)
    stop: str | None = None  # an order it could not carry out, that leaves training nowhere to go
    events: tuple[tuple[str, dict[str, Any]], ...] = ()  # (kind, data) for the run log
    refused: tuple[Refusal, ...] = ()  # orders of the plan it could not carry out at all, told to the policy


class Effector(Protocol):
    """The adapter's half of a repair policy: what the framework did to a step, and doing what a plan orders."""

    def executed(self, stats: StepStats, findings: tuple[Finding, ...]) -> list[Action]:
        """The skips and clips that the standing orders in force made of this step, as actions."""

    def carry_out(self, plan: Plan, stats: StepStats) -> Carried:
        """The plan's one-shot orders now, and its standing orders from the next step on."""

    def stand(self, plan: Plan) -> None:
        """Only the plan's standing orders (before the first step; ``Plan()`` when the policy is switched off)."""

    def close(self) -> Carried:
        """The end of the run: actions still open, what to report."""


_NO_ORDERS = Plan()  # what each step's policy update starts from (immutable, so one is enough)
NOTHING = Carried()  # what a quiet step carries (immutable: one for every step, no per-step object)


def policy_name(policy: Any) -> str:
    """How the run log's header names a policy, whatever the framework: the name given, a composed policy's
    ``name``, else the class of a repairer object."""
    if isinstance(policy, str):
        return policy
    return policy.name if isinstance(policy, Policy) else type(policy).__name__


def check_exporters(exporters: Any) -> list[Callable[[Any], Any]]:
    """The exporters as a list; a clear error for anything that cannot take a record."""
    if callable(exporters):
        raise TypeError("exporters= takes a list of exporters, e.g. exporters=[my_function]")
    try:
        out = list(exporters)
    except TypeError:
        raise TypeError(f"exporters= takes a list of exporters, got {type(exporters).__name__}") from None
    for exporter in out:
        if not callable(exporter):
            raise TypeError(f"an exporter must be callable with one record, got {type(exporter).__name__}")
    return out


def check_guard_arguments(*, policy: Any, log: Any, detectors: Any, exporters: Any) -> list[Callable[[Any], Any]]:
    """The checks every adapter's guard makes when it is built, with the same one-line messages: a wrong type
    is a ``TypeError``, an unknown policy name a ``ValueError``. Returns the exporters as a list."""
    if detectors is not None and not isinstance(detectors, Detector):
        raise TypeError(f"detectors= takes a trainguard Detector (see trainguard.core.detector), "
                        f"got {type(detectors).__name__}")
    if log is not None and not isinstance(log, (str, os.PathLike)):
        raise TypeError(f"log= takes the path of a run log (a str or os.PathLike), got {type(log).__name__}")
    if not isinstance(policy, (str, Policy)) and not all(
            callable(getattr(policy, hook, None)) for hook in ("before_update", "after_update", "close")):
        raise TypeError(f"policy= takes 'observe', 'safe', 'auto' or a policy built with "
                        f"trainguard.policies.chain(...), got {type(policy).__name__}")
    return check_exporters(exporters)


def standing(plan: Plan) -> Plan:
    """The plan without its one-shot orders and actions."""
    if plan.snapshot or plan.rollback is not None or plan.reset_moments or plan.restore_modules \
            or plan.recycle_units or plan.desaturate or plan.renormalize or plan.stop is not None or plan.actions:
        return plan._replace(snapshot=0, rollback=None, reset_moments=False, restore_modules=(), recycle_units=(),
                             desaturate=(), renormalize=(), stop=None, actions=())
    return plan


class Repair(Protocol):
    """What the session calls after each observed step to repair the run: :class:`PolicyRepair` (a core policy
    carried out by the adapter's effector), or an adapter's wrapper around a user's own repairer object."""

    plan: Plan | None

    def after(self, stats: StepStats, findings: tuple[Finding, ...]) -> Carried:
        """Returns the actions whose effect is now measured (``Carried.actions``), the events and a stop."""

    def close(self) -> Carried:
        """The actions still open at the end of the run, and what to report."""

    def stand_down(self) -> list[Action]:
        """Switched off after a failure: no standing order may outlive it. Returns the actions still open, so
        that what was done before the failure still reaches the run log."""


class PolicyRepair:
    """A core :class:`Policy` carried out by an :class:`Effector`, each action held until its effect is measured.

    Per step: what the standing orders did (``effector.executed``), the policy's update, the one-shot orders and
    the next standing orders (``effector.carry_out``), the effects (:class:`EffectTracker`). Before the first
    step the policy is primed with :data:`NO_STEP` so its standing orders hold from step 0.
    """

    def __init__(self, policy: Policy, effector: Effector, effect_window: int = 5):
        self.policy = policy
        self.effector = effector
        self.effects = EffectTracker(effect_window)
        self.state = policy.init()
        plan, self.state = policy.update(NO_STEP, (), _NO_ORDERS, self.state)
        self.plan: Plan | None = standing(plan)
        effector.stand(self.plan)

    def after(self, stats: StepStats, findings: tuple[Finding, ...]) -> Carried:
        effector, effects = self.effector, self.effects
        executed = effector.executed(stats, findings)
        plan, self.state = self.policy.update(stats, findings, _NO_ORDERS, self.state)
        done = effects.observe(stats)
        carried = effector.carry_out(plan, stats)
        if carried.refused and self.policy.refused is not None:
            told, self.state = self.policy.refused(carried.refused, self.state)
            plan = plan._replace(actions=plan.actions + told)
        for action in executed:
            effects.add(action, stats)
        for action in plan.actions:
            extra = carried.effects.get(action.kind)
            effects.add(action._replace(effect={**action.effect, **extra}) if extra else action, stats)
        for action in carried.actions:
            effects.add(action, stats)
        self.plan = standing(plan)
        stop = plan.stop if plan.stop is not None else carried.stop
        if stop is not None:
            done += effects.flush()
        if not done and stop is None and not carried.events:
            return NOTHING
        return Carried(actions=tuple(done), stop=stop, events=carried.events)

    def close(self) -> Carried:
        carried = self.effector.close()
        still_open = self.policy.closing(self.state) if self.policy.closing is not None else ()
        return carried._replace(actions=tuple(self.effects.flush()) + carried.actions + still_open)

    def stand_down(self) -> list[Action]:
        self.plan = None
        self.effector.stand(_NO_ORDERS)
        return self.effects.flush()


class Session:
    """One guarded run, framework-free. See the module docstring.

    Args:
        detectors: a core ``Detector`` in place of ``default_detectors()``.
        log: the run log (a :class:`Sink` that may also have ``diagnosis(causes)``), or None.
        exporters: callables receiving each StepStats, Finding and Action.
        framework: ``"torch"`` or ``"keras"``, for the diagnosis' fixes.
        step: says the adapter's current step (for the reports of failures outside ``observe``).

    The repair is started apart (:meth:`start`), once the adapter has built its effector.
    """

    def __init__(self, *, detectors: Detector | None = None, log: Any = None,
                 exporters: Sequence[Callable[[Any], Any]] = (), framework: str = "torch",
                 step: Callable[[], int] | None = None):
        self.findings: list[Finding] = []
        self.actions: list[Action] = []
        self.history = StatsHistory()
        self._recent_light: dict[int, StepStats] = {}  # the last RECENT_LIGHT light steps, by step
        self.framework = framework
        self._last_step = -1
        self.containment = Containment(self.findings, step if step is not None else lambda: self._last_step + 1)
        self.monitor = Monitor(detectors)
        self.log = log
        self.containment.log = log
        self._sinks: list[tuple[str, Any]] = [(RUN_LOG, log)] if log is not None else []
        self._sinks += [(f"exporter {sink.name}", sink) for sink in map(ExporterSink, exporters)]
        self.repair: Repair | None = None
        self.stop_reason: str | None = None
        self.causes: list[Cause] | None = None  # the diagnosis written at close
        self.validations: list[Validation] = []  # the validation results recorded, in order
        self._overfitting = overfitting()
        self._overfitting_state = self._overfitting.init()
        self.closed = False
        self.containment.on_disabled(self._stand_down)

    @property
    def plan(self) -> Plan | None:
        """The standing orders in force (None without a policy)."""
        return self.repair.plan if self.repair is not None else None

    # ----------------------------------------------------------------- the run
    def start(self, make_repair: Callable[[], Repair | None]) -> None:
        """Builds the repair (a failure there is contained like any later one in the policy)."""
        try:
            self.repair = make_repair()
        except Exception as e:  # noqa: BLE001 - containment
            self.containment.contain(REPAIRER, e)

    @property
    def repairing(self) -> bool:
        return self.repair is not None and REPAIRER not in self.containment.disabled

    def observe(self, stats: StepStats) -> StepResult:
        """One measured step through the history, the detectors, the sinks and the repair."""
        self._last_step = stats.step
        self.history.append(stats)
        containment = self.containment
        found: tuple[Finding, ...] = ()
        if "detectors" not in containment.disabled:
            try:
                found = self.monitor.observe(stats)
            except Exception as e:  # noqa: BLE001 - containment
                containment.contain("detectors", e, stats.step)
        self.findings.extend(found)
        if found and self._recent_light:
            self._keep_symptoms(found)
        for part, sink in self._sinks:
            if part not in containment.disabled:
                try:
                    sink.step(stats)
                    for finding in found:
                        sink.finding(finding)
                except Exception as e:  # noqa: BLE001 - containment
                    containment.contain(part, e, stats.step)
        repair = self.repair
        if repair is None or REPAIRER in containment.disabled:  # ``repairing``, inline on the per-step path
            return StepResult(found, (), None, None)
        try:
            carried = repair.after(stats, found)
        except Exception as e:  # noqa: BLE001 - containment
            containment.contain(REPAIRER, e, stats.step)
            return StepResult(found, (), None, None)
        if carried is NOTHING:
            return StepResult(found, (), repair.plan, None)
        self._record(carried.actions, carried.events, stats.step)
        if carried.stop is not None and self.stop_reason is None:
            self.stop_reason = carried.stop
        return StepResult(found, carried.actions, self.plan, carried.stop)

    def observe_light(self, steps: Sequence[StepStats]) -> tuple[Finding, ...]:
        """Light steps of an overhead budget (:mod:`trainguard.core.budget`: the loss measured, the gradients not),
        in order, through the detectors that read the loss alone and the sinks (the run log keeps every step).
        Not the history, but for a step a finding names (now or within ``RECENT_LIGHT`` steps, as a spike is
        judged some steps after it): it keeps the measured steps, all the diagnosis reads (``RunView``), so that its
        bounded tail is not filled with light ones. No repair: the steps were taken as
        they came, and the budget makes the steps after a finding full. Returns their findings."""
        if not steps:
            return ()
        self._last_step = steps[-1].step
        containment = self.containment
        per_step: list[tuple[Finding, ...]] = [()] * len(steps)
        if "detectors" not in containment.disabled:
            try:
                per_step = self.monitor.observe_light(steps)
            except Exception as e:  # noqa: BLE001 - containment
                containment.contain("detectors", e, steps[-1].step)
        found = tuple(f for step_found in per_step for f in step_found)
        self.findings.extend(found)
        recent = self._recent_light
        for stats in steps:
            recent[stats.step] = stats
        while len(recent) > RECENT_LIGHT:
            del recent[next(iter(recent))]
        if found:
            self._keep_symptoms(found)
        for part, sink in self._sinks:
            if part not in containment.disabled:
                try:
                    for stats, step_found in zip(steps, per_step):
                        sink.step(stats)
                        for finding in step_found:
                            sink.finding(finding)
                except Exception as e:  # noqa: BLE001 - containment
                    containment.contain(part, e, steps[-1].step)
        return found

    def _keep_symptoms(self, found: Iterable[Finding]) -> None:
        """The recent light steps these findings name go to the history: their loss is a symptom the diagnosis
        reads (``RunView.build``)."""
        for finding in found:
            stats = self._recent_light.pop(finding.step, None)
            if stats is not None:
                self.history.append(stats)

    def _record(self, actions: Iterable[Action], events: Iterable[tuple[str, dict[str, Any]]], step: int) -> None:
        actions = list(actions)
        self.actions.extend(actions)
        if not actions and not events:
            return

        def write(sink: Any) -> None:
            for action in actions:
                sink.action(action)
            for kind, data in events:
                sink.event(kind, step, **data)

        self._to_sinks(step, write)

    def _to_sinks(self, step: int, write: Callable[[Any], None]) -> None:
        """``write(sink)`` for each sink still on; one that fails is switched off alone (the per-step path in
        :meth:`observe` writes its own loop: no closure per step)."""
        for part, sink in self._sinks:
            if part not in self.containment.disabled:
                try:
                    write(sink)
                except Exception as e:  # noqa: BLE001 - containment
                    self.containment.contain(part, e, step)

    def validate(self, record: Validation) -> tuple[Finding, ...]:
        """One validation result (:mod:`trainguard.core.validation`), with the training loss's level now: through
        the overfitting detector, to the sinks that keep validations (the run log), its findings to every sink."""
        if self.closed:
            return ()
        if record.train_loss is None:
            record = replace(record, train_loss=training_level(self.history))
        self.validations.append(record)
        found: tuple[Finding, ...] = ()
        if "overfitting" not in self.containment.disabled:
            try:
                found, self._overfitting_state = self._overfitting.update(record, self._overfitting_state)
            except Exception as e:  # noqa: BLE001 - containment
                self.containment.contain("overfitting", e, record.step)
        self.findings.extend(found)

        def write(sink: Any) -> None:
            if callable(getattr(sink, "validation", None)):
                sink.validation(record)
            for finding in found:
                sink.finding(finding)

        self._to_sinks(record.step, write)
        return found

    def event(self, kind: str, step: int | None = None, **data: Any) -> None:
        """An event for the run log (contained like every write)."""
        self._record((), ((kind, data),), self._last_step + 1 if step is None else step)

    def diagnose(self) -> list[Cause]:
        """The ranked root causes so far (``[]`` for a healthy run); contained, ``[]`` on an internal error."""
        if self.causes is not None:
            return self.causes
        causes = self.containment.run("diagnosis", lambda: diagnose(list(self.history), self.findings, self.framework,
                                                                     actions=self.actions))
        return causes if causes is not None else []

    def close(self, status: str = "ok", step: int | None = None) -> None:
        """Hands out the actions still measuring, writes the diagnosis, closes the sinks."""
        if self.closed:
            return
        step = self._last_step + 1 if step is None else step
        if self.repairing:
            carried = self.containment.run(REPAIRER, self.repair.close)
            if carried is not None:
                self._record(carried.actions, carried.events, step)
        log = self.log
        if log is not None and RUN_LOG not in self.containment.disabled and callable(getattr(log, "diagnosis", None)):
            self.causes = self.diagnose()
            self.containment.run(RUN_LOG, log.diagnosis, self.causes)
        for part, sink in self._sinks:
            if part not in self.containment.disabled:
                self.containment.run(part, sink.close, status)
        self.closed = True

    def _stand_down(self, part: str) -> None:
        if part == REPAIRER and self.repair is not None:
            self._record(self.repair.stand_down(), (), self._last_step + 1)
