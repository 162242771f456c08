"""The framework-free session on synthetic streams: the history keeps a long run's start, each sink is contained
alone, a policy's actions carry their measured effect, a stop hands out what is still measuring, and the run log
ends with the diagnosis."""
from __future__ import annotations

import math
import warnings

from trainguard.core.actions import Action
from trainguard.core.policies import Plan, Policy, skip_if_non_finite
from trainguard.core.schedule import Cadence, schedule
from trainguard.core.presets import get_preset
from trainguard.core.session import Carried, PolicyRepair, Session
from trainguard.core.stats import StepStats


class Recorder:
    """A sink that keeps what it is given; ``broken`` makes it raise from that record type on."""

    def __init__(self, broken: str | None = None):
        self.records: list[tuple[str, object]] = []
        self.broken = broken
        self.closed = None

    def _keep(self, kind, record):
        if kind == self.broken:
            raise OSError("disk full")
        self.records.append((kind, record))

    def step(self, stats):
        self._keep("step", stats)

    def finding(self, finding):
        self._keep("finding", finding)

    def action(self, action):
        self._keep("action", action)

    def event(self, kind, step=None, **data):
        self._keep("event", (kind, step, data))

    def diagnosis(self, causes):
        self._keep("diagnosis", list(causes))

    def close(self, status="ok"):
        self.closed = status


class SkipRecorder:
    """An effector that only reports the skips the standing orders made (the stats say whether applied)."""

    def __init__(self):
        self.plans = []

    def stand(self, plan):
        self.plans.append(plan)

    def executed(self, stats, findings):
        return [] if stats.applied else [Action("skip_step", stats.step, "non_finite", {}, {})]

    def carry_out(self, plan, stats):
        self.plans.append(plan)
        return Carried()

    def close(self):
        return Carried()


def _stream(n, nan_at=()):
    for step in range(n):
        bad = step in nan_at
        yield StepStats(step=step, loss=math.nan if bad else 1.0 / (step + 1), grad_norm=1.0, loss_finite=not bad,
                        applied=not bad, lrs=(0.1,))


def test_the_history_of_a_long_run_keeps_its_start_and_stays_bounded():
    session = Session()
    for stats in _stream(20_000):
        session.observe(stats)
    kept = [s.step for s in session.history]
    assert kept[:3] == [0, 1, 2] and kept[-1] == 19_999
    assert len(kept) < 7_000 and kept == sorted(kept)


def test_a_failing_sink_is_switched_off_alone_and_reported_once():
    log, exporter_calls = Recorder(broken="step"), []
    session = Session(log=log, exporters=[exporter_calls.append])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for stats in _stream(5):
            session.observe(stats)
    assert [f.where for f in session.findings if f.code == "guard_internal_error"] == ["run log"]
    assert sum("internal error in its run log" in str(w.message) for w in caught) == 1
    assert len([r for r in exporter_calls if isinstance(r, StepStats)]) == 5  # the exporter kept receiving


def test_policy_actions_are_logged_once_their_effect_is_measured():
    log = Recorder()
    session = Session(log=log)
    effector = SkipRecorder()
    session.start(lambda: PolicyRepair(skip_if_non_finite(None), effector, effect_window=3))
    assert effector.plans[0].skip_non_finite  # primed before the first step
    results = [session.observe(stats) for stats in _stream(8, nan_at={2})]
    assert [len(r.actions) for r in results] == [0, 0, 0, 0, 0, 1, 0, 0]  # after 3 applied finite steps
    (skip,) = session.actions
    assert skip.step == 2 and skip.effect["steps_measured"] == 3 and skip.effect["loss_after"] == 1 / 5
    assert [a for kind, a in log.records if kind == "action"] == [skip]


def test_a_stop_hands_out_the_actions_still_measuring():
    def stop_at_4(stats, findings, plan, state):
        return (plan._replace(stop="gave up") if stats.step == 4 else plan), state

    session = Session()
    session.start(lambda: PolicyRepair(Policy("stop", tuple, stop_at_4), SkipRecorder()))
    results = [session.observe(stats) for stats in _stream(5, nan_at={3})]
    assert results[-1].stop == "gave up" and session.stop_reason == "gave up"
    assert [(a.kind, a.step) for a in results[-1].actions] == [("skip_step", 3)]


def test_a_policy_that_raises_stands_the_effector_down_and_keeps_earlier_actions():
    def fail_at_5(stats, findings, plan, state):
        if stats.step == 5:
            raise RuntimeError("policy bug")
        return plan._replace(skip_non_finite=True), state

    effector = SkipRecorder()
    session = Session()
    session.start(lambda: PolicyRepair(Policy("bug", tuple, fail_at_5), effector))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for stats in _stream(8, nan_at={2}):
            session.observe(stats)
    assert effector.plans[-1] == Plan()  # no standing order outlives the policy
    assert [(a.kind, a.step) for a in session.actions] == [("skip_step", 2)]
    assert session.plan is None


def test_close_writes_the_diagnosis_then_closes_every_sink():
    log = Recorder()
    session = Session(log=log)
    for stats in _stream(50):
        session.observe(stats)
    session.close("ok")
    assert log.records[-1] == ("diagnosis", []) and log.closed == "ok"
    assert session.closed


def test_the_schedule_is_plain_data():
    standard = schedule(get_preset("standard"))
    assert [s for s in range(60) if standard.layers.due(s)] == [0, 25, 50]
    assert [s for s in range(5) if standard.data.due(s)] == [0, 1, 2]
    forensic = schedule(get_preset("forensic"))
    assert all(forensic.layers.due(s) for s in range(200)) and not forensic.layers.due(201)
    assert not Cadence().due(0)


def test_the_diagnosis_reads_the_measured_steps_and_the_light_ones_with_a_finding():
    from trainguard.core.diagnosis.run_view import RunView
    from trainguard.core.findings import Finding, Severity

    stats = [StepStats(step=i, loss=1.0, grad_norm=0.5, light=i % 4 != 0) for i in range(12)]
    spike = Finding("loss_spike", Severity.INFO, 6, None, {}, "a spike")
    view = RunView.build(stats, [spike])
    assert view.steps.tolist() == [0, 4, 6, 8]  # the light step 6 holds the symptom
    only_light = RunView.build([s for s in stats if s.light], [])
    assert len(only_light.steps) == 9  # a log of light steps alone is read whole


def test_light_steps_go_to_the_sinks_and_the_detectors_and_to_the_history_only_when_a_finding_names_them():
    sink = Recorder()
    session = Session(log=sink)
    steps = [StepStats(step=i, loss=1.0 + 0.01 * (i % 3) if i != 30 else 1e4, light=True) for i in range(40)]
    found = session.observe_light(steps)
    assert [r.step for kind, r in sink.records if kind == "step"] == list(range(40))
    assert [f.code for f in found] == ["loss_spike"] and found[0].step == 30
    assert [(kind, r.code) for kind, r in sink.records if kind == "finding"] == [("finding", "loss_spike")]
    assert [s.step for s in session.history] == [30]
