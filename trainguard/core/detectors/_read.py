"""Helpers the detectors share to read StepStats: finite values, and the weight tensors of ``stats.layers``."""
from __future__ import annotations

import math
import re

from trainguard.core.stats import LayerStats

__all__ = ["is_bias", "kernels", "finite"]

_PATH_SEPARATORS = re.compile(r"[./]")


def is_bias(name: str) -> bool:
    """True for a bias tensor: ``fc1.bias`` (PyTorch), ``dense/bias`` or ``dense/bias:0`` (Keras/TF)."""
    last = _PATH_SEPARATORS.split(name)[-1].split(":")[0].lower()
    return last.endswith("bias")


def kernels(layers: tuple[LayerStats, ...]) -> list[LayerStats]:
    """The weight tensors, in forward order, or every tensor when none is named as a weight.

    AUTOTRAINER (Zhang et al., ICSE'21) compares kernel gradients only (its ``gradient_norm`` takes every other
    tensor of a Keras model, skipping the biases): a bias gradient is the sum of the layer's output gradients over
    the batch, so its norm scales with batch size and, before a BatchNorm, is exactly zero.
    """
    weights = [layer for layer in layers if not is_bias(layer.name)]
    return weights if weights else list(layers)


def finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)
