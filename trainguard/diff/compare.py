"""Comparing two runs' records of one step: which recorded quantities differ beyond tolerance, ranked.

Tolerance. Two runs of the same code on the same machine are usually bit-identical; the same computation
reached by another path (``model.fit`` against a hand-written loop) differs by float32 rounding, ~1e-7 per
reduction, and the differences grow over the steps. A relative tolerance of 1e-4 (~800 float32 ulps) leaves
room for a few hundred steps of that growth, while the mistakes diff looks for (a layer in inference mode, other
batches, another learning rate) change the first affected quantity by percents. Each quantity is compared
relative to ``max(|a|, |b|, scale)``: ``scale`` is the largest value of the same quantity over the step's
layers (or the buffer's own norm), so the rounding noise of a near-zero gradient (a bias followed by BatchNorm
has a gradient of ~1e-9) is not mistaken for a difference.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable

from trainguard.core.stats import StepStats
from trainguard.diff.load import module_of
from trainguard.diff.result import CATEGORIES, Difference

__all__ = ["DEFAULT_RTOL", "relative_difference", "ForwardOrder", "StepComparison", "compare_step"]

DEFAULT_RTOL = 1e-4

# zero_grad_fraction is left out: it counts exact zeros, which rounding alone flips in a near-zero gradient
# (a bias followed by BatchNorm), so it jumps where nothing differs.
_GRADIENT_FIELDS = ("grad_norm", "grad_abs_mean")
_WEIGHT_FIELDS = ("weight_norm", "update_ratio")


def relative_difference(a: float | None, b: float | None, scale: float = 0.0) -> float | None:
    """``|a - b| / max(|a|, |b|, scale)``; 0 for equal values (NaN equals NaN), inf when exactly one side is
    non-finite or the two infinities differ; None when either side was not recorded."""
    if a is None or b is None:
        return None
    a_finite, b_finite = math.isfinite(a), math.isfinite(b)
    if not (a_finite and b_finite):
        same = (math.isnan(a) and math.isnan(b)) or a == b
        return 0.0 if same else math.inf
    delta = abs(a - b)
    if delta == 0.0:
        return 0.0
    return delta / max(abs(a), abs(b), scale)


class ForwardOrder:
    """Ranks parameter, buffer and module names in forward order, from the header's parameter list.

    A buffer or module sits right after its module's last parameter; a module with no parameter (BatchNorm with
    ``affine=False``) goes after all of them, in the order it was first seen.
    """

    def __init__(self, parameters: Iterable[str]):
        self.parameters = tuple(parameters)
        self._rank: dict[str, int] = {}
        modules: dict[str, int] = {}
        for index, name in enumerate(self.parameters):
            self._rank.setdefault(name, index)
            modules[module_of(name)] = index
        for module, index in modules.items():
            self._rank.setdefault(module, index)
        for module, index in modules.items():
            # Keras reports a layer's mode by its short name ("batch_normalization"), its weights by path.
            self._rank.setdefault(re.split(r"[./]", module)[-1], index)
        self._extra: dict[str, int] = {}

    def rank(self, name: str | None) -> tuple[int, int]:
        if name is None:
            return (-1, 0)
        for key in (name, module_of(name)):
            if key in self._rank:
                return (self._rank[key], 0 if key == name else 1)
        module = module_of(name)
        self._extra.setdefault(module, len(self._extra))
        return (len(self.parameters) + self._extra[module], 1)

    def sorted(self, names: Iterable[str]) -> list[str]:
        return sorted(set(names), key=lambda n: (self.rank(n), n))


@dataclass(frozen=True)
class StepComparison:
    """One compared step: the differences beyond tolerance, ranked; per parameter/buffer the largest relative
    difference of any of its quantities (within tolerance too, for the heat map); ``max_rel`` the largest
    relative difference of any numeric quantity (0.0: the step is bit-identical in both runs)."""

    step: int
    differences: tuple[Difference, ...]
    row_max: dict[str, float]
    max_rel: float


def compare_step(a: StepStats, b: StepStats, order: ForwardOrder, rtol: float) -> StepComparison:
    found: list[Difference] = []
    row_max: dict[str, float] = {}
    max_rel = [0.0]

    def check(category: str, quantity: str, where: str | None, va: Any, vb: Any, scale: float = 0.0) -> None:
        rel = relative_difference(va, vb, scale)
        if rel is None:
            return
        max_rel[0] = max(max_rel[0], rel)
        if where is not None and category in ("bn_stats", "gradient", "weight"):
            row_max[where] = max(row_max.get(where, 0.0), rel)
        if rel > rtol:
            found.append(Difference(a.step, category, quantity, where, va, vb, rel))

    if a.batch_fingerprint is not None and b.batch_fingerprint is not None \
            and a.batch_fingerprint != b.batch_fingerprint:
        found.append(Difference(a.step, "data", "batch_fingerprint", None, a.batch_fingerprint,
                                b.batch_fingerprint, None))
    if a.lrs and b.lrs:
        if len(a.lrs) != len(b.lrs):
            found.append(Difference(a.step, "lr", "lr_groups", None, len(a.lrs), len(b.lrs), None))
        else:
            for group, (la, lb) in enumerate(zip(a.lrs, b.lrs)):
                check("lr", "lr", f"group {group}" if len(a.lrs) > 1 else None, la, lb)
    if a.batch_size is not None and b.batch_size is not None and a.batch_size != b.batch_size:
        found.append(Difference(a.step, "batch_size", "batch_size", None, a.batch_size, b.batch_size,
                                relative_difference(float(a.batch_size), float(b.batch_size))))
    _compare_modes(a, b, found)
    _compare_buffers(a, b, check)
    check("loss", "loss", None, a.loss, b.loss)
    check("gradient", "grad_norm", None, a.grad_norm, b.grad_norm)
    _compare_layers(a, b, check)
    found.sort(key=lambda d: (CATEGORIES.index(d.category), order.rank(d.where), d.quantity))
    return StepComparison(a.step, tuple(found), row_max, max_rel[0])


def _compare_modes(a: StepStats, b: StepStats, found: list[Difference]) -> None:
    if a.eval_mode_modules is None or b.eval_mode_modules is None:  # not sampled in one run
        return
    modes_a, modes_b = set(a.eval_mode_modules), set(b.eval_mode_modules)
    for module in modes_a ^ modes_b:
        found.append(Difference(a.step, "mode", "eval_mode", module, module in modes_a, module in modes_b, None))


def _compare_buffers(a: StepStats, b: StepStats, check) -> None:
    buffers_b = {buf.name: buf for buf in b.buffers}
    for buf_a in a.buffers:
        buf_b = buffers_b.get(buf_a.name)
        if buf_b is None:
            continue
        scale = max(abs(buf_a.norm or 0.0), abs(buf_b.norm or 0.0))
        scale = scale if math.isfinite(scale) else 0.0
        check("bn_stats", "mean", buf_a.name, buf_a.mean, buf_b.mean, scale)
        check("bn_stats", "norm", buf_a.name, buf_a.norm, buf_b.norm)


def _compare_layers(a: StepStats, b: StepStats, check) -> None:
    if not a.layers or not b.layers:
        return
    layers_b = {layer.name: layer for layer in b.layers}
    pairs = [(la, layers_b[la.name]) for la in a.layers if la.name in layers_b]
    for category, names in (("gradient", _GRADIENT_FIELDS), ("weight", _WEIGHT_FIELDS)):
        for name in names:
            scale = _largest(getattr(x, name) for pair in pairs for x in pair)
            for la, lb in pairs:
                check(category, name, la.name, getattr(la, name), getattr(lb, name), scale)


def _largest(values: Iterable[float | None]) -> float:
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    return max(finite, default=0.0)
