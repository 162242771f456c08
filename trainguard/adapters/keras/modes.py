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
from typing import Any, Callable

import keras

from trainguard.adapters.keras import private

__all__ = ["ModeRecorder", "mode_sensitive_layers", "all_layers", "wrap_call"]

_DROPOUT_TYPES = tuple(getattr(keras.layers, name) for name in (
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout", "GaussianNoise",
    "AlphaDropout") if hasattr(keras.layers, name))


def all_layers(model: Any) -> list:
    """Every layer inside ``model``, nested ones included."""
    nested = private.nested_layers(model)
    if nested is not None:
        return nested
    found = []
    for layer in getattr(model, "layers", []):
        found.append(layer)
        found.extend(all_layers(layer))
    return found


def wrap_call(layer: Any, make: Callable[[Callable], Callable]) -> Callable[[], None]:
    """Replaces ``layer.call`` on this instance by ``make(original)``; returns the function that undoes it.
    Keras read the call's signature when the layer was built, so the arguments it passes stay the same."""
    had_own = "call" in layer.__dict__
    original = layer.call
    wrapper = functools.update_wrapper(make(original), original)
    object.__setattr__(layer, "call", wrapper)

    def restore() -> None:
        if had_own:
            object.__setattr__(layer, "call", original)
        else:
            layer.__dict__.pop("call", None)

    return restore


def mode_sensitive_layers(model: Any) -> list:
    """The layers whose behaviour depends on ``training``: BatchNormalization that trains its statistics, and
    Dropout-like layers with a non-zero rate."""
    out = []
    for layer in all_layers(model):
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
        self._restore: list[Callable[[], None]] = []

    def install(self) -> None:
        if self._restore:
            return
        for layer in self.layers:
            self._restore.append(wrap_call(layer, self._recorder(layer.name)))

    def _recorder(self, name: str) -> Callable[[Callable], Callable]:
        seen = self.seen

        def make(original: Callable) -> Callable:
            def call(*args, **kwargs):
                seen[name] = bool(kwargs.get("training"))
                return original(*args, **kwargs)

            return call

        return make

    def remove(self) -> None:
        for restore in reversed(self._restore):
            restore()
        self._restore = []

    def clear(self) -> None:
        self.seen.clear()

    def inference_mode_layers(self) -> tuple[str, ...] | None:
        """Layers whose last call since :meth:`clear` ran in inference mode; None when none was called."""
        if not self.seen:
            return None
        return tuple(layer.name for layer in self.layers if self.seen.get(layer.name) is False)
