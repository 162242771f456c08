"""The SVG plot helpers the HTML reports share."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np

from trainguard.report.html import page, section, table
from trainguard.report.svg import Marker, Series, line_plot, log_ticks, nice_ticks


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def polyline_points(svg: str) -> list[tuple[float, float]]:
    points = []
    for match in re.finditer(r'<polyline points="([^"]+)"', svg):
        points += [tuple(map(float, p.split(","))) for p in match.group(1).split()]
    return points


def test_a_one_step_spike_survives_thinning_a_million_points():
    x = np.arange(1_000_000, dtype=float)
    y = np.ones_like(x)
    y[654_321] = 50.0
    svg = line_plot([Series("loss", x, y)], width=600, height=200)
    parse(svg)
    ys = [p[1] for p in polyline_points(svg)]
    assert len(ys) < 3000 and max(ys) - min(ys) > 100  # the spike is drawn, far from the flat line


def test_log_scale_drops_non_positive_values_and_marks_non_finite_ones():
    svg = line_plot([Series("loss", [0, 1, 2, 3, 4], [1.0, 0.0, -1.0, float("nan"), 10.0])], log_y=True)
    parse(svg)
    assert len(polyline_points(svg)) >= 2
    assert svg.count('stroke="#d62728" stroke-width="2"') == 1  # the NaN tick on the top edge


def test_markers_legend_and_escaping():
    svg = line_plot([Series("a<b", [0, 1], [1, 2]), Series("eval", [0, 1], [2, 1], style="markers")],
                    markers=[Marker(0.5, "spike", tooltip="x & y")], title="t<1>")
    root = parse(svg)
    assert "a&lt;b" in svg and "x &amp; y" in svg and "t&lt;1&gt;" in svg
    assert len(root.findall(".//{http://www.w3.org/2000/svg}circle")) == 2


def test_empty_and_constant_series():
    assert "no data" in line_plot([Series("x", [], [])])
    parse(line_plot([Series("x", [1, 2, 3], [5, 5, 5])]))
    parse(line_plot([Series("x", [7], [float("inf")])]))


def test_ticks():
    assert nice_ticks(0, 10) == [0, 2, 4, 6, 8, 10]
    assert [round(10 ** t, 6) for t in log_ticks(-3, 1)] == [0.001, 0.01, 0.1, 1, 10]
    assert len(log_ticks(0.1, 0.3)) >= 2


def test_page_is_a_document_without_scripts():
    html = page("r", section("s", table(["a"], [["<x>"]])))
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html and "&lt;x&gt;" in html
