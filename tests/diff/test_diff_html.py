"""``trainguard diff --html`` in a real browser, with the doctor's headless-Chromium check, and the heat map."""
from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from _diff_runs import PARAMETERS, write_run

from trainguard.cli import main
from trainguard.diff import diff
from trainguard.diff.html import render_html
from trainguard.report.svg import HEAT_COLOURS, heat_map


def _doctor_browser_check():
    """The doctor's browser helpers (tests/doctor/test_html_browser.py), loaded by path: one check for every
    HTML page trainguard writes."""
    doctor_tests = Path(__file__).resolve().parents[1] / "doctor"
    sys.path.insert(0, str(doctor_tests))
    try:
        spec = importlib.util.spec_from_file_location("_doctor_html_browser", doctor_tests / "test_html_browser.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(doctor_tests))
    return module


browser = _doctor_browser_check()


def _eval_from_step_3(stats):
    if stats.step < 3:
        return stats
    layers = tuple(replace(layer, grad_norm=layer.grad_norm * 2) for layer in stats.layers)
    return replace(stats, eval_mode_modules=("bn",), loss=stats.loss * 1.5, layers=layers)


@pytest.mark.skipif(browser.CHROMIUM is None, reason="chromium is not installed (make test installs it with "
                                                     "apt-get when run as root)")
def test_html_report_renders_in_chromium_without_errors_and_is_not_blank(tmp_path, capsys):
    a = write_run(tmp_path / "a.jsonl", steps=40)
    b = write_run(tmp_path / "b.jsonl", steps=40, edit=_eval_from_step_3)
    page = tmp_path / "diff.html"
    assert main(["diff", str(a), str(b), "--html", str(page)]) == 1
    assert str(page) in capsys.readouterr().out
    log, shot = browser.render(page, tmp_path)
    assert shot.exists(), log[-2000:]
    assert browser.page_errors(log) == []
    assert len(browser.png_colours(shot, limit=6)) >= 6


def test_heat_map_rows_follow_forward_order_and_turn_dark_where_the_runs_part(tmp_path):
    a = write_run(tmp_path / "a.jsonl", steps=10)
    b = write_run(tmp_path / "b.jsonl", steps=10, edit=_eval_from_step_3)
    result = diff(a, b)
    html = render_html(result)
    assert "<script" not in html and "PART" in html and "bn_inference_mode" in html
    rows = [name for name, _ in result.layers]
    assert rows == ["fc1.weight", "fc1.bias", "bn.weight", "bn.bias", "bn.num_batches_tracked", "bn.running_mean",
                    "bn.running_var", "fc2.weight", "fc2.bias"]
    # Every parameter agrees exactly before step 3; from step 3 its gradient differs (fc1.weight's doubles).
    grad_rows = [i for i, name in enumerate(rows) if name in PARAMETERS]
    assert all(result.heatmap[i][2] == 0.0 and result.heatmap[i][3] > 0.01 for i in grad_rows)
    assert result.heatmap[0][3] == pytest.approx(0.5)
    tooltips = re.findall(r"<title>([^<]*)</title>", html)
    assert any(t.startswith("fc1.weight, step 3-9: ") for t in tooltips)


def test_heat_map_colours_missing_below_and_above():
    svg = heat_map(["x", "y"], [0, 1, 2], [[0.0, 1e-3, float("nan")], [5.0, float("inf"), 1e-9]], lo=1e-7, hi=1.0)
    fills = re.findall(r'<rect x="[\d.]+" y="\d+" width="[\d.]+" height="\d+" fill="(#[0-9a-f]+)"><title>', svg)
    assert fills[0] == "#ffffff" and fills[2] == "#e8e8e8"  # agree, then not recorded
    assert fills[1] in HEAT_COLOURS[3:6]  # 1e-3 sits in the middle of 1e-7..1
    assert fills[3] == HEAT_COLOURS[-1] and fills[4] == "#ffffff"  # 5 and inf merged (darkest), then 1e-9 white
