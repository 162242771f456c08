"""The HTML report in a real browser: headless Chromium (Debian's ``chromium`` package, installed by the
Makefile's test set-up) renders it without a console error and paints a screenshot that is not blank."""
from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from doctor_synth import healthy, sick, write_csv, write_jsonl
from trainguard.doctor import diagnose_file
from trainguard.doctor.html_report import render_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test installs it "
                                                         "with apt-get when run as root)")
# Chromium's own start-up noise (no D-Bus in a container, no GPU) is not the page's.
_PAGE_ERRORS = ("CONSOLE", "Uncaught", "Refused to", "Failed to load resource")


def render(html_path: Path, tmp_path: Path) -> tuple[str, Path]:
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         "--window-size=1100,1800", f"--screenshot={shot}", html_path.as_uri()],
        capture_output=True, text=True, timeout=120)
    return proc.stderr, shot


def page_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if any(marker in line for marker in _PAGE_ERRORS)]


def png_colours(path: Path, limit: int = 3) -> set[tuple[int, ...]]:
    """Distinct pixel colours of an 8-bit RGB/RGBA PNG (stops counting at ``limit``)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour_type = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour_type in (2, 6)
            channels = 3 if colour_type == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride = zlib.decompress(idat), width * channels
    previous, colours = bytearray(stride), set()
    for row in range(height):
        filter_type, line = raw[row * (stride + 1)], bytearray(raw[row * (stride + 1) + 1:(row + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, up_left = previous[i], previous[i - channels] if i >= channels else 0
            if filter_type == 1:
                line[i] = (line[i] + left) & 255
            elif filter_type == 2:
                line[i] = (line[i] + up) & 255
            elif filter_type == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif filter_type == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else up_left)) & 255
        for i in range(0, stride, channels * 7):
            colours.add(tuple(line[i:i + channels]))
        if len(colours) >= limit:
            return colours
        previous = line
    return colours


def test_report_renders_without_console_errors_and_is_not_blank(tmp_path):
    files = [write_csv(healthy(2, 1500), tmp_path / "healthy.csv"),
             write_csv(sick("periodic_spike", 1), tmp_path / "periodic.csv"),
             write_jsonl(sick("non_finite", 3), tmp_path / "nan.jsonl")]
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\x00\x01")
    html = tmp_path / "report.html"
    html.write_text(render_html([diagnose_file(f) for f in files + [bad]]), encoding="utf-8")
    log, shot = render(html, tmp_path)
    assert shot.exists(), log[-2000:]
    assert page_errors(log) == []
    assert len(png_colours(shot)) >= 3


def test_the_check_sees_a_page_error(tmp_path):
    """Control: the same checks flag a page whose only content, a script, is refused, and which stays blank."""
    html = tmp_path / "broken.html"
    html.write_text("<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" "
                    "content=\"default-src 'none'\"></head><body><script>throw new Error('x')</script>"
                    "</body></html>")
    log, shot = render(html, tmp_path)
    assert page_errors(log)
    assert len(png_colours(shot)) == 1
