"""Self-contained HTML pages for trainguard's reports: inline CSS, inline SVG (``trainguard.report.svg``), no
scripts and nothing fetched from the network (a Content-Security-Policy says so to the browser).

>>> html = page("Report", section("Run", paragraph("all good")))
>>> "<script" in html
False
"""
from __future__ import annotations

from html import escape
from typing import Iterable, Sequence

__all__ = ["escape", "page", "section", "paragraph", "table", "badge", "details", "SEVERITY_COLOURS"]

SEVERITY_COLOURS = {"info": "#1f77b4", "warning": "#e6a700", "error": "#d62728", "critical": "#7b0000"}

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1000px;
color:#222;background:#fafafa;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd;
padding-bottom:4px;word-break:break-all}h3{font-size:15px;margin:18px 0 6px}
.sub{color:#666;margin-top:0}table{border-collapse:collapse;width:100%;font-size:13px;margin:8px 0;
background:#fff}th,td{border:1px solid #e3e3e3;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f1f1f1}.badge{display:inline-block;border-radius:3px;padding:1px 6px;color:#fff;font-size:12px}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}pre{white-space:pre-wrap;margin:0}
svg.plot{display:block;margin:8px 0;max-width:100%;height:auto;border:1px solid #eee}
details{margin:6px 0}.note{color:#666;font-size:13px}
"""


def page(title: str, body: str, *, subtitle: str = "") -> str:
    sub = f'<p class="sub">{escape(subtitle)}</p>' if subtitle else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "img-src data:\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><h1>{escape(title)}</h1>{sub}{body}</body></html>\n"
    )


def section(title: str, body: str, *, level: int = 2, anchor: str | None = None) -> str:
    ident = f' id="{escape(anchor)}"' if anchor else ""
    return f"<section{ident}><h{level}>{escape(title)}</h{level}>{body}</section>"


def paragraph(text: str, *, css_class: str = "") -> str:
    cls = f' class="{css_class}"' if css_class else ""
    return f"<p{cls}>{escape(text)}</p>"


def badge(text: str, colour: str) -> str:
    return f'<span class="badge" style="background:{escape(colour)}">{escape(text)}</span>'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, raw_columns: Iterable[int] = ()) -> str:
    """A table; cells are escaped except in ``raw_columns`` (already HTML, e.g. a badge)."""
    raw = set(raw_columns)
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell if i in raw else escape(str(cell))}</td>" for i, cell in enumerate(row))
        + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def details(summary: str, body: str) -> str:
    return f"<details><summary>{escape(summary)}</summary>{body}</details>"
