"""Small, dependency-free SVG plots for the HTML reports: lines and/or markers, several series, a log-scale
option, vertical event markers with native tooltips. No JavaScript; the output is a string to inline.

>>> svg = line_plot([Series("loss", [0, 1, 2], [3.0, 2.0, 1.5])], title="loss", log_y=True)
>>> svg.startswith("<svg")
True

Long series are reduced to the minimum and maximum of each pixel-wide bucket, so a one-step spike in a
million-step run still shows. Non-finite points break the line and are drawn as red ticks on the top edge.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Sequence

import numpy as np

__all__ = ["Series", "Marker", "line_plot", "heat_map", "HEAT_COLOURS", "PALETTE", "nice_ticks", "log_ticks"]

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf")
_NON_FINITE_COLOUR = "#d62728"
_MARGIN = (56, 16, 30, 40)  # left, right, top, bottom


@dataclass(frozen=True)
class Series:
    """One curve. ``style`` is "line", "markers" or "line+markers"."""

    name: str
    x: Sequence[float] | np.ndarray
    y: Sequence[float] | np.ndarray
    color: str | None = None
    style: str = "line"
    dashed: bool = False
    marker_size: float = 2.5


@dataclass(frozen=True)
class Marker:
    """A vertical line at ``x`` with a tooltip; ``label`` is drawn above the plot when short."""

    x: float
    label: str
    color: str = "#d62728"
    tooltip: str = ""


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Tick positions (as log10 values) for a log axis spanning [lo, hi] in log10: decades, else 1-2-5 steps
    within the decades, else round linear values; at most 8."""
    decades = range(math.floor(lo) - 1, math.ceil(hi) + 1)
    for mantissas in ((1,), (1, 2, 5), (1, 1.5, 2, 3, 4, 5, 6, 7, 8, 9)):
        ticks = [math.log10(m) + d for d in decades for m in mantissas if lo - 1e-9 <= math.log10(m) + d <= hi + 1e-9]
        if len(ticks) >= 2:
            stride = max(1, math.ceil(len(ticks) / 8))
            return ticks[::stride]
    return [math.log10(v) for v in nice_ticks(10 ** lo, 10 ** hi) if v > 0]


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e5 or abs(v) < 1e-3:
        return f"{v:.0e}".replace("e+0", "e").replace("e-0", "e-")
    return f"{v:.4g}"


def _reduce(x: np.ndarray, y: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of each bucket, in x order, so spikes survive the thinning."""
    n = len(x)
    if n <= 2 * buckets:
        return x, y
    edges = np.linspace(0, n, buckets + 1).astype(int)
    xs, ys = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        seg = y[a:b]
        finite = np.isfinite(seg)
        if not finite.all():
            bad = a + int(np.argmax(~finite))
            xs.append(x[bad]); ys.append(y[bad])
        if finite.any():
            idx = a + np.flatnonzero(finite)
            lo, hi = idx[np.argmin(y[idx])], idx[np.argmax(y[idx])]
            for i in sorted({int(lo), int(hi)}):
                xs.append(x[i]); ys.append(y[i])
    return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)


def line_plot(series: Sequence[Series], *, title: str = "", x_label: str = "", y_label: str = "",
              log_y: bool = False, markers: Sequence[Marker] = (), width: int = 760, height: int = 260) -> str:
    left, right, top, bottom = _MARGIN
    pw, ph = width - left - right, height - top - bottom
    prepared = []
    for i, s in enumerate(series):
        x = np.asarray(s.x, dtype=np.float64)
        y = np.asarray(s.y, dtype=np.float64)
        n = min(len(x), len(y))
        x, y = x[:n], y[:n]
        if log_y:
            # Zero or negative values have no place on a log axis: they are dropped, not drawn as errors.
            keep = ~np.isfinite(y) | (y > 0)
            x, y = x[keep], y[keep]
            y = np.where(np.isfinite(y), np.log10(np.where(y > 0, y, 1.0)), y)
        x, y = _reduce(x, y, pw)
        prepared.append((s, x, y, s.color or PALETTE[i % len(PALETTE)]))
    xs = np.concatenate([p[1] for p in prepared] + [np.asarray([m.x for m in markers], dtype=np.float64)]) \
        if prepared or markers else np.empty(0)
    ys = np.concatenate([p[2][np.isfinite(p[2])] for p in prepared]) if prepared else np.empty(0)
    xs = xs[np.isfinite(xs)]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img" aria-label="{escape(title or y_label or "plot")}" class="plot">',
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>']
    if title:
        out.append(f'<text x="{left}" y="16" font-size="13" font-weight="bold" fill="#222">{escape(title)}</text>')
    if len(xs) == 0 or len(ys) == 0:
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#888" font-size="12">'
                   f'no data</text></svg>')
        return "".join(out)
    # Values near the float limit (a loss of 1e308) would overflow the axis arithmetic: such an axis is laid out
    # in units of a power of two (exact), and its labels multiply back.
    x_unit, y_unit = _unit(xs), _unit(ys)
    xs, ys = xs / x_unit, ys / y_unit
    prepared = [(s, x / x_unit, y / y_unit, colour) for s, x, y, colour in prepared]
    x0, x1 = float(xs.min()), float(xs.max())
    y0, y1 = float(ys.min()), float(ys.max())
    if x1 == x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    if y1 == y0:
        pad = abs(y0) * 0.1 or 1.0
        y0, y1 = y0 - pad, y1 + pad
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - pad, y1 + pad

    def px(v: np.ndarray | float) -> np.ndarray | float:
        return left + (np.asarray(v) - x0) / (x1 - x0) * pw

    def py(v: np.ndarray | float) -> np.ndarray | float:
        return top + (1 - (np.asarray(v) - y0) / (y1 - y0)) * ph

    # Grid and axes.
    out.append('<g font-size="10" fill="#555" stroke-width="1">')
    y_ticks = log_ticks(y0, y1) if log_y else nice_ticks(y0, y1)
    for t in y_ticks:
        yy = py(t)
        label = _fmt(10 ** t) if log_y else _fmt(t * y_unit)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#eee"/>'
                   f'<text x="{left - 4}" y="{yy + 3:.1f}" text-anchor="end">{label}</text>')
    for t in nice_ticks(x0, x1, 6):
        xx = px(t)
        out.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{top}" y2="{top + ph}" stroke="#f3f3f3"/>'
                   f'<text x="{xx:.1f}" y="{top + ph + 14}" text-anchor="middle">{_fmt(t * x_unit)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    if x_label:
        out.append(f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle">{escape(x_label)}</text>')
    if y_label:
        out.append(f'<text x="12" y="{top + ph / 2}" text-anchor="middle" '
                   f'transform="rotate(-90 12 {top + ph / 2})">{escape(y_label + (" (log)" if log_y else ""))}'
                   f'</text>')
    out.append("</g>")
    for m in markers:
        if not math.isfinite(m.x):
            continue
        xx = px(m.x / x_unit)
        tip = escape(m.tooltip or m.label)
        out.append(f'<g class="marker"><title>{tip}</title>'
                   f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{top}" y2="{top + ph}" stroke="{m.color}" '
                   f'stroke-dasharray="4 3" stroke-width="1.5"/>'
                   f'<path d="M{xx - 5:.1f},{top - 8} L{xx + 5:.1f},{top - 8} L{xx:.1f},{top - 1} Z" '
                   f'fill="{m.color}"/></g>')
    for s, x, y, colour in prepared:
        finite = np.isfinite(y)
        out.append(f'<g class="series"><title>{escape(s.name)}</title>')
        if "line" in s.style:
            dash = ' stroke-dasharray="5 3"' if s.dashed else ""
            for segment in _segments(finite):
                pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px(x[segment]), py(y[segment])))
                if segment.stop - segment.start == 1:
                    pts += f" {px(x[segment.start]) + 0.5:.1f},{py(y[segment.start]):.1f}"
                out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="1.3"{dash}/>')
        if "markers" in s.style:
            for a, b in zip(px(x[finite]), py(y[finite])):
                out.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="{s.marker_size}" fill="{colour}"/>')
        for a in px(x[~finite]):
            out.append(f'<line x1="{a:.1f}" x2="{a:.1f}" y1="{top}" y2="{top + 8}" stroke="{_NON_FINITE_COLOUR}" '
                       f'stroke-width="2"/>')
        out.append("</g>")
    if len(prepared) > 1:
        lx = left + 8
        for s, _, _, colour in prepared:
            out.append(f'<rect x="{lx}" y="{top + 6}" width="10" height="10" fill="{colour}"/>'
                       f'<text x="{lx + 14}" y="{top + 15}" font-size="11" fill="#333">{escape(s.name)}</text>')
            lx += 24 + 7 * len(s.name)
    out.append("</svg>")
    return "".join(out)


def _unit(values: np.ndarray) -> float:
    """1, or the power of two that brings the largest magnitude under 1e300 (room for spans and padding)."""
    largest = float(np.max(np.abs(values))) if len(values) else 0.0
    return 1.0 if largest <= 1e300 else 2.0 ** math.ceil(math.log2(largest / 1e300))


def _segments(finite: np.ndarray) -> list[slice]:
    """Runs of consecutive finite points."""
    if not finite.any():
        return []
    edges = np.diff(np.concatenate([[0], finite.astype(np.int8), [0]]))
    return [slice(int(a), int(b)) for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1))]


# Sequential scale for heat maps, light to dark (colour-blind safe: yellow-orange-red-brown).
HEAT_COLOURS = ("#fff7bc", "#fee391", "#fec44f", "#fe9929", "#ec7014", "#cc4c02", "#993404", "#662506")
_BELOW_COLOUR = "#ffffff"  # at or below the scale's low end
_MISSING_COLOUR = "#e8e8e8"  # not recorded


def heat_map(rows: Sequence[str], x: Sequence[float], values: np.ndarray | Sequence[Sequence[float]], *,
             lo: float, hi: float, log: bool = True, title: str = "", x_label: str = "", value_label: str = "",
             marks: Sequence[tuple[float, str]] = (), width: int = 760, row_height: int = 14) -> str:
    """A rows x columns grid of colour cells (``values[i][j]`` for row ``i`` at ``x[j]``), with a colour legend.

    Values at or below ``lo`` are white, NaN cells grey ("not recorded"), values between ``lo`` and ``hi``
    (log10-spaced when ``log``) take one of :data:`HEAT_COLOURS`, values above ``hi`` the darkest. ``marks``
    put labelled ticks on the legend (a threshold). More columns than pixels are merged by their maximum; runs
    of equal colour in a row are drawn as one rectangle with a tooltip, so the SVG stays small.
    """
    grid = np.asarray(values, dtype=np.float64).reshape(len(rows), len(x))
    xs = np.asarray(x, dtype=np.float64)
    label_width = min(220, 8 + 6 * max((len(r) for r in rows), default=0))
    left, right, top = label_width, 16, 30
    pw = max(50, width - left - right)
    columns = len(xs)
    if columns > pw:  # merge neighbouring columns, keeping the largest value of each group
        edges = np.linspace(0, columns, pw + 1).astype(int)
        grid = np.stack([_nanmax_columns(grid[:, a:b]) for a, b in zip(edges[:-1], edges[1:])], axis=1)
        xs = np.asarray([xs[a] for a in edges[:-1]])
        columns = len(xs)
    row_height = max(3, min(row_height, 600 // max(1, len(rows))))
    ph = row_height * len(rows)
    height = top + ph + 78
    scale_lo, scale_hi = (math.log10(lo), math.log10(hi)) if log else (lo, hi)

    def bin_of(v: float) -> int:  # -2 missing, -1 below lo, else colour index
        if not math.isfinite(v):
            return -2 if math.isnan(v) else len(HEAT_COLOURS) - 1
        if v <= lo:
            return -1
        s = math.log10(v) if log else v
        return min(len(HEAT_COLOURS) - 1, int((s - scale_lo) / (scale_hi - scale_lo) * len(HEAT_COLOURS)))

    def colour(b: int) -> str:
        return _MISSING_COLOUR if b == -2 else _BELOW_COLOUR if b == -1 else HEAT_COLOURS[b]

    cell = pw / max(1, columns)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img" aria-label="{escape(title or "heat map")}" class="plot heatmap">',
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>']
    if title:
        out.append(f'<text x="{left}" y="16" font-size="13" font-weight="bold" fill="#222">{escape(title)}</text>')
    for i, name in enumerate(rows):
        y = top + i * row_height
        if row_height >= 9:
            out.append(f'<text x="{left - 4}" y="{y + row_height - 3}" font-size="10" text-anchor="end" '
                       f'fill="#333">{escape(name[-36:])}</text>')
        bins = [bin_of(float(v)) for v in grid[i]]
        start = 0
        for j in range(1, columns + 1):
            if j < columns and bins[j] == bins[start]:
                continue
            peak = _nanmax_columns(grid[i:i + 1, start:j])[0]
            span = f"{_fmt(xs[start])}" if j - start == 1 else f"{_fmt(xs[start])}-{_fmt(xs[j - 1])}"
            tip = f"{name}, {x_label or 'x'} {span}: " + ("not recorded" if bins[start] == -2 else _fmt(peak))
            out.append(f'<rect x="{left + start * cell:.2f}" y="{y}" width="{(j - start) * cell:.2f}" '
                       f'height="{row_height}" fill="{colour(bins[start])}"><title>{escape(tip)}</title></rect>')
            start = j
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    out.append('<g font-size="10" fill="#555">')
    if columns:
        for t in nice_ticks(float(xs[0]), float(xs[-1]), 6):
            j = int(np.searchsorted(xs, t))
            xx = left + (j + 0.5) * cell
            out.append(f'<text x="{xx:.1f}" y="{top + ph + 13}" text-anchor="middle">{_fmt(t)}</text>')
    if x_label:
        out.append(f'<text x="{left + pw / 2}" y="{top + ph + 27}" text-anchor="middle">{escape(x_label)}</text>')
    legend_y, legend_w = top + ph + 40, min(320, pw)
    step = legend_w / len(HEAT_COLOURS)
    out.append(f'<rect x="{left}" y="{legend_y}" width="{step:.1f}" height="10" fill="{_MISSING_COLOUR}"/>'
               f'<text x="{left + step + 4:.1f}" y="{legend_y + 9}">not recorded</text>')
    bar = left + 2 * step + 70
    out.append(f'<rect x="{bar:.1f}" y="{legend_y}" width="{step:.1f}" height="10" fill="{_BELOW_COLOUR}" '
               f'stroke="#ccc"/>')
    for k, c in enumerate(HEAT_COLOURS):
        out.append(f'<rect x="{bar + (k + 1) * step:.1f}" y="{legend_y}" width="{step:.1f}" height="10" fill="{c}"/>')
    end = bar + (len(HEAT_COLOURS) + 1) * step

    def legend_x(v: float) -> float:
        s = math.log10(v) if log else v
        return bar + step + (s - scale_lo) / (scale_hi - scale_lo) * (end - bar - step)

    out.append(f'<text x="{bar + step:.1f}" y="{legend_y + 22}" text-anchor="middle">{_fmt(lo)}</text>'
               f'<text x="{end:.1f}" y="{legend_y + 22}" text-anchor="middle">{_fmt(hi)}</text>')
    for v, label in marks:
        if (v > 0 or not log) and lo < v < hi:
            xx = legend_x(v)
            out.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{legend_y - 3}" y2="{legend_y + 13}" stroke="#000" '
                       f'stroke-width="1.5"/><text x="{xx:.1f}" y="{legend_y + 22}" text-anchor="middle">'
                       f'{escape(label)}</text>')
    if value_label:
        out.append(f'<text x="{end + 8:.1f}" y="{legend_y + 9}">{escape(value_label)}</text>')
    out.append("</g></svg>")
    return "".join(out)


def _nanmax_columns(block: np.ndarray) -> np.ndarray:
    """Per-row maximum ignoring NaN; NaN where a row is all NaN (without numpy's all-NaN warning)."""
    filled = np.where(np.isnan(block), -np.inf, block)
    peak = filled.max(axis=1) if block.shape[1] else np.full(block.shape[0], np.nan)
    return np.where(np.isneginf(peak) & np.isnan(block).all(axis=1), np.nan, peak)
