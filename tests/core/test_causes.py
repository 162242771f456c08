import pathlib
import re

import pytest

from trainguard.core.causes import CAUSES, cause_doc_link

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "causes.md"


def _github_anchor(heading: str) -> str:
    # GitHub: lower-case, drop punctuation other than '-' and '_', spaces become '-'.
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_cause_has_an_entry_whose_anchor_its_link_names():
    anchors = {_github_anchor(line[3:]) for line in DOC.read_text().splitlines() if line.startswith("## ")}
    for code in CAUSES:
        link = cause_doc_link(code)
        assert link.startswith("docs/causes.md#")
        assert link.split("#", 1)[1] in anchors, f"no docs/causes.md entry for {code}"


def test_unknown_cause_is_refused():
    with pytest.raises(ValueError, match="unknown cause"):
        cause_doc_link("gremlins")
