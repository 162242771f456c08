"""Which BatchNormalization / Dropout layers ran in inference mode during a training step.

Keras passes the mode per call (``model(x, training=True)``), not as a module flag as torch does, so the signal
is the ``training`` argument each layer's ``call`` actually received. A custom loop that calls ``model(x)``
inside its training step gives BatchNormalization ``training=None`` (it normalizes with its moving statistics,
which then never update, while gamma/beta still get gradients) and Dropout ``training=False`` (seed case 000,
where this made a large network explode).

:class:`ModeRecorder` wraps the ``call`` of each such layer with a recorder of that argument. The guard clears
the records before a training step and reads them after its update: a layer is listed when its last call in the
step ran in inference mode. Layers frozen on purpose are left out (BatchNormalization with ``trainable=False``
runs in inference mode by Keras' design for fine-tuning; Dropout with rate 0 does nothing). Under a compiled
step (JAX ``jit``) the Python wrapper runs only while the step is traced, so the check is made on the first
step and after each retrace; the records are None (not sampled) otherwise.
"""
from __future__ import annotations

import functools
from typing import Any

import keras

__all__ = ["ModeRecorder", "mode_sensitive_layers"]

_DROPOUT_TYPES = tuple(getattr(keras.layers, name) for name in (
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout", "GaussianNoise",
    "AlphaDropout") if hasattr(keras.layers, name))


def _all_layers(model: Any) -> list:
    flatten = getattr(model, "_flatten_layers", None)
    if callable(flatten):
        return list(flatten(include_self=False, recursive=True))
    found = []
    for layer in getattr(model, "layers", []):
        found.append(layer)
        found.extend(_all_layers(layer))
    return found


def mode_sensitive_layers(model: Any) -> list:
    """The layers whose behaviour depends on ``training``: BatchNormalization that trains its statistics, and
    Dropout-like layers with a non-zero rate."""
    out = []
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable:
            out.append(layer)
        elif isinstance(layer, _DROPOUT_TYPES) and (getattr(layer, "rate", None) or getattr(layer, "stddev", 0)):
            out.append(layer)
    return out


class ModeRecorder:
    """Records the ``training`` value each mode-sensitive layer of ``model`` was called with."""

    def __init__(self, model: Any):
        self.layers = mode_sensitive_layers(model)
        self.seen: dict[str, bool] = {}
        self._originals: list[tuple[Any, Any]] = []

    def install(self) -> None:
        if self._originals:
            return
        for layer in self.layers:
            original = layer.call
            seen, name = self.seen, layer.name

            def call(*args, _original=original, _name=name, **kwargs):
                seen[_name] = bool(kwargs.get("training"))
                return _original(*args, **kwargs)

            functools.update_wrapper(call, original)
            object.__setattr__(layer, "call", call)
            self._originals.append((layer, original))

    def remove(self) -> None:
        for layer, _ in self._originals:
            try:
                object.__delattr__(layer, "call")
            except AttributeError:
                pass
        self._originals = []

    def clear(self) -> None:
        self.seen.clear()

    def inference_mode_layers(self) -> tuple[str, ...] | None:
        """Layers whose last call since :meth:`clear` ran in inference mode; None when none was called."""
        if not self.seen:
            return None
        return tuple(layer.name for layer in self.layers if self.seen.get(layer.name) is False)
