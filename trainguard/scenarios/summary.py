"""A scenario run unguarded and guarded, side by side: the cells of ``trainguard demo``'s table and its HTML page.

Plain strings and numbers only; the demo command draws them with rich, :func:`html_report` with the shared
HTML/SVG helpers of ``trainguard.report``.
"""
from __future__ import annotations

import collections
import math
from dataclasses import dataclass

from trainguard.core.findings import Finding
from trainguard.report import html
from trainguard.report.svg import Marker, Series, line_plot
from trainguard.scenarios.runner import Scenario, ScenarioResult

__all__ = ["Comparison", "cause_found", "repaired_cause", "actions_taken", "html_report"]


@dataclass(frozen=True)
class Comparison:
    """One scenario's faulty run without a guard and under a policy; ``error`` when a run could not be made."""

    scenario: Scenario
    unguarded: ScenarioResult | None
    guarded: ScenarioResult | None
    error: str | None = None

    @property
    def cause_right(self) -> bool:
        return self.guarded is not None and self.scenario.cause in (self.guarded.top_cause,
                                                                    repaired_cause(self.guarded))


def repaired_cause(result: ScenarioResult) -> str | None:
    """The cause a kept trial repaired: the experiment showed it (the symptom it removes may then be gone from
    the run the diagnosis reads)."""
    return next((a.params.get("cause") for a in result.actions if a.kind == "trial" and a.effect.get("kept")), None)


def _top_finding(findings: tuple[Finding, ...]) -> Finding | None:
    """The most severe finding, the earliest among equals."""
    return min(findings, key=lambda f: (-int(f.severity), f.step), default=None)


def cause_found(result: ScenarioResult) -> str:
    """The diagnosed top cause with its confidence; the top finding (marked so) where the guard offers no
    diagnosis; ``-`` when there is neither."""
    repaired = repaired_cause(result)
    if result.diagnosis and (repaired is None or result.diagnosis[0].code == repaired):
        top = result.diagnosis[0]
        return f"{top.code} ({top.confidence:.0%})"
    if repaired is not None:
        return f"{repaired} (trial kept)"
    if result.diagnosis is not None:
        return "none"
    finding = _top_finding(result.findings)
    return f"finding: {finding.code}" if finding else "-"


def actions_taken(result: ScenarioResult) -> str:
    """Each action kind with its count, in order of first use; ``-`` when the guard did nothing."""
    counts = collections.Counter(a.kind for a in result.actions)
    text = ", ".join(kind if n == 1 else f"{kind} x{n}" for kind, n in counts.items()) or "-"
    if result.policy_used != result.policy:
        text += f" (policy {result.policy_used!r}: {result.policy!r} unavailable)"
    return text


def _fmt(v: float) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _loss_plot(c: Comparison) -> str:
    series = []
    # The guarded curve is dashed so that it stays visible where it follows the unguarded one exactly.
    for label, result, colour, dashed in (("unguarded", c.unguarded, "#d62728", False),
                                          ("guarded", c.guarded, "#1f77b4", True)):
        if result is not None and result.losses:
            series.append(Series(label, range(len(result.losses)), result.losses, color=colour, dashed=dashed))
    markers = []
    if c.guarded is not None:
        first_of_kind: dict[str, int] = {}
        for a in c.guarded.actions:
            first_of_kind.setdefault(a.kind, a.step)
        markers = [Marker(step, kind, "#2ca02c", f"first {kind} at step {step}")
                   for kind, step in first_of_kind.items()]
    positive = all(v > 0 for s in series for v in s.y if math.isfinite(v))
    return line_plot(series, title=f"{c.scenario.name}: loss", x_label="step", y_label="loss", log_y=positive,
                     markers=markers)


def _diagnosis_table(result: ScenarioResult) -> str:
    if result.diagnosis is None:
        return html.paragraph("This build's guard offers no diagnosis.", css_class="note")
    if not result.diagnosis:
        return html.paragraph("Diagnosis: none.", css_class="note")
    rows = [(cause.code, f"{cause.confidence:.0%}", cause.message, f"{cause.fix.summary} ({cause.doc})")
            for cause in result.diagnosis]
    return html.table(("cause", "confidence", "why", "fix"), rows)


def _section(c: Comparison) -> str:
    s = c.scenario
    parts = [html.paragraph(f"Seed {s.seed_id} ({s.seed_file}). {s.description}. "
                            f"Expected cause: {s.cause}. The healthy twin: {s.healthy_twin}.")]
    if c.error:
        parts.append(html.paragraph(f"error: {c.error}"))
    parts.append(_loss_plot(c))
    for label, result in (("unguarded", c.unguarded), ("guarded", c.guarded)):
        if result is None:
            continue
        policy = f", policy {result.policy_used!r}" if result.policy is not None else ""
        body = [html.paragraph(f"{result.outcome}. {result.steps} steps in {result.seconds:.1f} s{policy}."
                               + (f" Stopped: {result.stopped}." if result.stopped else ""))]
        body += [html.paragraph(note, css_class="note") for note in result.notes]
        if result.policy is not None:
            body.append(_diagnosis_table(result))
            if result.actions:
                body.append(html.details(f"{len(result.actions)} actions", html.table(
                    ("step", "action", "reason", "params", "effect"),
                    [(a.step, a.kind, a.reason or "", _kv(a.params), _kv(a.effect)) for a in result.actions])))
            if result.findings:
                body.append(html.details(f"{len(result.findings)} findings", html.table(
                    ("step", "severity", "code", "where", "message"),
                    [(f.step, f.severity.name.lower(), f.code, f.where or "", f.message) for f in result.findings])))
        metrics = ", ".join(f"{k} {_fmt(v)}" for k, v in result.metrics.items())
        body.append(html.paragraph(f"Measured: {metrics}.", css_class="note"))
        parts.append(html.section(label, "".join(body), level=3))
    return html.section(f"{s.name} ({s.seed_id})", "".join(parts), anchor=s.name)


def _kv(d: dict) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in d.items())


def html_report(comparisons: list[Comparison], rows: list[tuple[str, ...]], headers: tuple[str, ...],
                subtitle: str) -> str:
    """The demo's page: its table as printed, then per scenario the loss curves (actions marked), the
    diagnosis with its fixes, the actions and the findings."""
    body = html.table(headers, rows) + "".join(_section(c) for c in comparisons)
    return html.page("trainguard demo", body, subtitle=subtitle)
