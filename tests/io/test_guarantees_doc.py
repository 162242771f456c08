"""docs/guarantees.md names the tests that hold each promise: every one it names must exist."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_named_in_the_guarantees_exists():
    text = (ROOT / "docs" / "guarantees.md").read_text()
    named = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", text)
    assert len(named) >= 20
    for path, test in named:
        source = (ROOT / path).read_text()
        if test:
            assert re.search(rf"^def {test}\(", source, re.MULTILINE), f"{path}::{test} is named but missing"
