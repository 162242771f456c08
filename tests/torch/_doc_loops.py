"""The loops of docs/real-loops.md as the tests run them: each ```python block as written (guarded), and its
unguarded twin, made by undoing the page's marks (a line ending ``# trainguard`` is dropped; a line ending
``# unguarded: CODE`` becomes CODE). The page is the one source: a loop edited there is the loop tested."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

PAGE = Path(__file__).resolve().parents[2] / "docs" / "real-loops.md"
_BLOCK = re.compile(r"^## (?P<title>.+?)$|^```python\n(?P<code>.*?)^```$", re.M | re.S)
_UNGUARDED = re.compile(r"^(?P<indent>\s*)(?P<code>.*?)\s*# unguarded: (?P<twin>.+)$")


def blocks() -> dict[str, str]:
    """``{section title: code}`` for every python block of the page, each under the heading before it."""
    found, title, text = {}, None, PAGE.read_text()
    for match in _BLOCK.finditer(text):
        if match.group("title"):
            title = match.group("title")
        elif title is not None:  # padded so that a traceback's line numbers are the page's
            found[title] = "\n" * text.count("\n", 0, match.start("code")) + match.group("code")
    return found


def unguarded(code: str) -> str:
    lines = []
    for line in code.splitlines():
        if line.rstrip().endswith("# trainguard"):
            lines.append("")  # keeps the page's line numbers
            continue
        twin = _UNGUARDED.match(line)
        lines.append(f"{twin.group('indent')}{twin.group('twin')}" if twin else line)
    return "\n".join(lines) + "\n"


def with_policy(code: str, policy: str) -> str:
    assert 'policy="observe"' in code, "each loop on the page is shown under observe"
    return code.replace('policy="observe"', f'policy="{policy}"')


def run(code: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__real_loop__"}
    exec(compile(code, str(PAGE), "exec"), namespace)  # noqa: S102 - the page's own code
    return namespace


def trained_state(namespace: dict[str, Any]) -> list[tuple[str, torch.Tensor]]:
    """Every tensor of every model, optimizer and scaler the loop left behind (also inside dicts and tuples)."""
    state: list[tuple[str, torch.Tensor]] = []

    def visit(name: str, value: Any) -> None:
        if isinstance(value, torch.nn.Module):
            state.extend((f"{name}.{key}", t) for key, t in value.state_dict().items())
        elif isinstance(value, torch.optim.Optimizer):
            for i, per_param in enumerate(value.state_dict()["state"].values()):
                state.extend((f"{name}.state[{i}].{key}", t) for key, t in per_param.items()
                             if isinstance(t, torch.Tensor))
        elif isinstance(value, torch.amp.GradScaler):
            state.append((f"{name}.scale", torch.tensor(value.get_scale())))
        elif isinstance(value, dict):
            for key, item in value.items():
                visit(f"{name}[{key}]", item)
        elif isinstance(value, tuple):
            for i, item in enumerate(value):
                visit(f"{name}[{i}]", item)

    for name, value in sorted(namespace.items()):
        if not name.startswith("_"):
            visit(name, value)
    return state
