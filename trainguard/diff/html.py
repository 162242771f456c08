"""``trainguard diff --html``: one self-contained page (inline SVG, no script) with the verdict, both runs' curves
side by side and a per-layer divergence heat map. Built from the doctor's page and plot helpers."""
from __future__ import annotations

import os

from trainguard.diff.result import DiffResult, format_value
from trainguard.io.files import write_text_atomic
from trainguard.report.html import badge, escape, page, paragraph, section, table
from trainguard.report.svg import Marker, Series, heat_map, line_plot

__all__ = ["render_html", "write_html"]

# The heat map's colour scale: from float32 rounding (below it: white) to a 100% relative difference.
HEAT_LOW, HEAT_HIGH = 1e-7, 1.0
_RUN_COLOURS = {"a": "#1f77b4", "b": "#d62728"}


def write_html(result: DiffResult, path: str | os.PathLike[str]) -> None:
    """Writes the page all or nothing (a temporary file renamed over ``path``)."""
    write_text_atomic(path, render_html(result))


def render_html(result: DiffResult) -> str:
    first = result.first_divergence
    if first is None:
        verdict = badge("AGREE", "#2ca02c") + escape(f" every recorded quantity is within rtol {result.rtol:g} on "
                                                     f"all {len(result.compared_steps)} compared steps")
    else:
        where = f" in {first.where}" if first.where else ""
        verdict = badge("PART", "#d62728") + escape(f" at step {first.step}: {first.category} ({first.quantity})"
                                                    f"{where} differs first")
    body = [f"<p>{verdict}</p>", _runs_table(result)]
    if first is not None:
        cause = result.cause
        body.append(section(f"Cause: {cause.code}", paragraph(cause.message) + paragraph(f"Fix: {cause.fix}")
                            + paragraph(f"See {cause.doc}", css_class="note"), anchor="cause"))
    body.append(section("Curves (A solid, B dashed)", _curves(result), anchor="curves"))
    body.append(section("Per-layer divergence", _heat_map(result), anchor="heatmap"))
    if result.differences:
        body.append(section(f"What differs at step {first.step}, most upstream first", table(
            ["kind", "quantity", "where", "A", "B", "rel. diff"],
            [[d.category, d.quantity, d.where or "", format_value(d.a), format_value(d.b), format_value(d.rel_diff)]
             for d in result.differences]), anchor="differences"))
        body.append(section("First differing step by kind", table(
            ["kind", "first step"], [[k, "-" if v is None else str(v)]
                                     for k, v in result.first_step_by_category.items()])))
    if result.notes:
        body.append(section("Notes", "".join(paragraph(n, css_class="note") for n in result.notes)))
    return page("trainguard diff", "".join(body), subtitle=f"A: {result.run_a.path}   B: {result.run_b.path}")


def _runs_table(result: DiffResult) -> str:
    rows = []
    for label, run in (("A", result.run_a), ("B", result.run_b)):
        rows.append([label, run.path, run.framework, run.preset or "?", f"{run.first_step}-{run.last_step}",
                     str(run.steps), run.status or "no end record"])
    return table(["run", "log", "framework", "preset", "steps", "records", "status"], rows)


def _curves(result: DiffResult) -> str:
    first = result.first_divergence
    markers = [Marker(float(first.step), "parts", tooltip=f"first difference: step {first.step}")] if first else []
    plots = []
    for key, label, log_y in (("loss", "loss", False), ("grad_norm", "gradient norm", True)):
        series = []
        for run in ("a", "b"):
            curves = result.curves[run]
            xs = [x for x, v in zip(curves["step"], curves[key]) if v is not None]
            ys = [v for v in curves[key] if v is not None]
            series.append(Series(f"{run.upper()} {label}", xs, ys, color=_RUN_COLOURS[run], dashed=run == "b"))
        plots.append(line_plot(series, title=label, x_label="step", y_label=label, log_y=log_y, markers=markers,
                               width=480, height=260))
    return f'<div style="display:flex;flex-wrap:wrap;gap:8px">{"".join(plots)}</div>'


def _heat_map(result: DiffResult) -> str:
    if not result.layers:
        return paragraph("no per-layer statistics to compare", css_class="note")
    if not result.heatmap_steps:
        return paragraph("no step carries per-layer statistics in both runs", css_class="note")
    svg = heat_map([name for name, _ in result.layers], result.heatmap_steps, result.heatmap,
                   lo=HEAT_LOW, hi=HEAT_HIGH, title="largest relative difference per parameter / buffer and step",
                   x_label="step", value_label="relative difference", marks=[(result.rtol, "rtol")])
    return svg + paragraph("Each row is a parameter (gradient and weight statistics) or a normalisation buffer, in "
                           "forward order; white cells agree to float32 rounding, grey cells were not recorded.",
                           css_class="note")

