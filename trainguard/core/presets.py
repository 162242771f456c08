"""Presets order the statistics by cost, so the user picks a budget, not a list (after Cockpit's presets).

Cheap statistics (loss, global gradient norm, LR, batch size, finiteness) are taken every step in every preset.
The per-layer pass costs one norm per tensor and a copy of the weights, so it runs on a cadence.
"""
from __future__ import annotations

from typing import NamedTuple

__all__ = ["Preset", "PRESETS", "get_preset"]


class Preset(NamedTuple):
    name: str
    layer_every: int  # per-layer gradient/weight norms, update ratios, Adam state
    mode_every: int  # module train/eval modes: a prime, so it does not alias with a loop's round-number period
    data_batches: int  # how many first batches get a data-scale summary
    fetch_every: int  # on an accelerator: steps between host fetches of the on-device statistics
    forensic_steps: int = 0  # "forensic": record everything at cadence 1 for this many steps


PRESETS: dict[str, Preset] = {
    "economy": Preset("economy", layer_every=100, mode_every=97, data_batches=1, fetch_every=50),
    "standard": Preset("standard", layer_every=25, mode_every=23, data_batches=3, fetch_every=25),
    "full": Preset("full", layer_every=1, mode_every=1, data_batches=10, fetch_every=1),
    "forensic": Preset("forensic", layer_every=25, mode_every=23, data_batches=10, fetch_every=1, forensic_steps=200),
}


def get_preset(name: str | Preset) -> Preset:
    if isinstance(name, Preset):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}") from None
