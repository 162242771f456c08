"""Matching the names of two runs of the same model.

Keras numbers layers per process: a model built twice in one notebook (``model.fit`` first, then a custom loop)
names its weights ``sequential/dense/kernel`` the first time and ``sequential_1/dense_2/kernel`` the second. The
two runs are still of the same model: the names differ only by those automatic ``_N`` suffixes, consistently,
position by position. :func:`component_map` recognises that and maps B's path components onto A's, so B's
records can be compared, and reported, under A's names.
"""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Sequence

from trainguard.core.stats import StepStats

__all__ = ["component_map", "rename", "rename_step"]

_SEPARATORS = re.compile(r"([./])")
_NUMBERED = re.compile(r"_\d+$")


def component_map(names_a: Sequence[str], names_b: Sequence[str]) -> dict[str, str] | None:
    """B's name components -> A's when the two parameter lists differ only by automatic ``_N`` numbering, the
    same way at every position; None when they name different models."""
    if len(names_a) != len(names_b):
        return None
    forward: dict[str, str] = {}
    backward: dict[str, str] = {}
    for a, b in zip(names_a, names_b):
        parts_a, parts_b = _SEPARATORS.split(a), _SEPARATORS.split(b)
        if len(parts_a) != len(parts_b):
            return None
        for x, y in zip(parts_a, parts_b):
            if _NUMBERED.sub("", x) != _NUMBERED.sub("", y):
                return None
            if forward.setdefault(y, x) != x or backward.setdefault(x, y) != y:
                return None
    return {b: a for b, a in forward.items() if a != b}


def rename(name: str, mapping: dict[str, str]) -> str:
    return "".join(mapping.get(part, part) for part in _SEPARATORS.split(name))


def rename_step(stats: StepStats, mapping: dict[str, str]) -> StepStats:
    """``stats`` with every parameter, buffer and module name put through ``mapping``."""
    if not mapping:
        return stats
    modes = stats.eval_mode_modules
    return replace(
        stats,
        layers=tuple(replace(layer, name=rename(layer.name, mapping)) for layer in stats.layers),
        buffers=tuple(replace(buf, name=rename(buf.name, mapping)) for buf in stats.buffers),
        eval_mode_modules=None if modes is None else tuple(rename(m, mapping) for m in modes),
    )
