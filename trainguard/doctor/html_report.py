"""The doctor's HTML report: per run, the findings and four plots (loss with finding markers, gradient norm,
learning rate, and the loss relative to its trend folded by the position in the epoch, where spikes at epoch
ends line up on the right edge)."""
from __future__ import annotations

import json

import numpy as np

from trainguard.doctor.analysis.periodic_spike import find_period
from trainguard.doctor.analysis.signals import Signals
from trainguard.doctor.diagnose import RunDiagnosis
from trainguard.doctor.findings import json_step
from trainguard.report.html import SEVERITY_COLOURS, badge, details, escape, page, paragraph, section, table
from trainguard.report.svg import Marker, Series, line_plot

__all__ = ["render_html"]


def render_html(results: list[RunDiagnosis], *, title: str = "trainguard doctor") -> str:
    parts = [_overview(results)]
    for i, result in enumerate(results):
        parts.append(section(str(result.path), _run(result), anchor=f"run{i}"))
    return page(title, "".join(parts), subtitle=f"{len(results)} log file(s)")


def _overview(results: list[RunDiagnosis]) -> str:
    rows = []
    for i, r in enumerate(results):
        worst = "unreadable" if r.error else (r.worst.name.lower() if r.worst is not None else "healthy")
        colour = SEVERITY_COLOURS.get(worst, "#2ca02c" if worst == "healthy" else "#555")
        rows.append([f'<a href="#run{i}">{escape(str(r.path))}</a>', badge(worst, colour),
                     str(len(r.findings)), escape(", ".join(dict.fromkeys(f.code for f in r.findings)))])
    return table(["run", "worst", "findings", "codes"], rows, raw_columns=(0, 1, 2, 3))


def _run(result: RunDiagnosis) -> str:
    if result.error:
        return paragraph(f"Could not read this file: {result.error}")
    series = result.series
    out = [paragraph(f"{series.format}, {len(series)} steps; columns: "
                     + ", ".join(f"{k}={v}" for k, v in series.columns.items()), css_class="note")]
    if result.findings:
        rows = [[badge(f.severity.name.lower(), SEVERITY_COLOURS[f.severity.name.lower()]),
                 escape(str(json_step(f.step))),
                 escape(f.code), escape(f.cause), escape(f.message), escape(f.fix),
                 details("evidence", f"<pre>{escape(json.dumps(f.evidence, indent=1, default=str))}</pre>")]
                for f in result.findings]
        out.append(table(["severity", "step", "finding", "cause", "what", "fix", ""], rows,
                         raw_columns=range(7)))
    else:
        out.append(paragraph("Healthy: no findings."))
    out.extend(_plots(result))
    return "".join(out)


def _plots(result: RunDiagnosis) -> list[str]:
    series = result.series
    step = series.step
    positive = bool(np.all(series.loss[np.isfinite(series.loss)] > 0))
    loss_series = [Series("train loss", step, series.loss)]
    if series.eval_loss is not None:
        loss_series.append(Series("eval loss", series.eval_step, series.eval_loss, style="line+markers",
                                  marker_size=3))
    markers = []
    for f in result.findings:
        if f.code == "parse":
            continue
        colour = SEVERITY_COLOURS[f.severity.name.lower()]
        # A periodic pattern is marked at each of its spikes (the evidence lists the first ten).
        for at in f.evidence.get("spike_steps") or [f.step]:
            markers.append(Marker(float(at), f.code, colour, f"{f.code} ({f.cause}) at step {json_step(at)}: "
                                                             f"{f.message}"))
    plots = [line_plot(loss_series, title="loss", x_label="step", y_label="loss", log_y=positive,
                       markers=markers)]
    grad = series.optional("grad_norm")
    if grad is not None:
        plots.append(line_plot([Series("gradient norm", step, grad, color="#2ca02c")], title="gradient norm",
                               x_label="step", y_label="grad norm",
                               log_y=bool(np.all(grad[np.isfinite(grad)] > 0)), markers=markers))
    lr = series.optional("lr")
    if lr is not None:
        plots.append(line_plot([Series("learning rate", step, lr, color="#9467bd")], title="learning rate",
                               x_label="step", y_label="lr"))
    plots.append(_folded(series))
    return plots


def _folded(series) -> str:
    sig = Signals(series)
    if sig.n < 20:
        return ""
    period = sig.steps_per_epoch
    if period is None:
        found = find_period(sig)
        period = (found.steps, "spike period") if found else None
    if period is None:
        return paragraph("Spikes by epoch phase: no epoch column and no periodic spikes to fold by.",
                         css_class="note")
    length, source = period
    phase = np.mod(sig.steps - sig.steps[0], length) / length
    ratio = np.exp(sig.residual) if sig.log_scale else sig.residual
    spikes = sig.z >= 4
    title = f"loss / trend by position in the epoch ({length:g} steps, from the {source})"
    return line_plot([Series("all steps", phase[~spikes], ratio[~spikes], color="#bbbbbb", style="markers",
                             marker_size=1.5),
                      Series("spikes", phase[spikes], ratio[spikes], color="#d62728", style="markers",
                             marker_size=3)],
                     title=title, x_label="position in epoch (0 = start, 1 = end)",
                     y_label="loss / trend" if sig.log_scale else "loss - trend", log_y=sig.log_scale)
