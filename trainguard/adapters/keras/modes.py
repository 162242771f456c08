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

The same wrapper carries out ``restore_mode`` (``policy="auto"``, as torch's ``module.train()``):
:meth:`ModeRecorder.train` makes a BatchNormalization layer that gets no ``training`` argument at all
(``training=None``: the loop called ``model(x)``) run in training mode for calls that record gradients, as if the
loop had called ``model(x, training=True)`` (Keras' ``BatchNormalization`` docs: ``training=True`` normalizes with
the batch's statistics and updates the moving ones). An explicit ``training=False`` (BatchNormalization frozen on
purpose) and calls without gradients (an evaluation under ``torch.no_grad()``) are left as they are. Dropout is
not restored: Keras hands it ``training=False`` whether the loop passed it or not, so an explicit choice cannot be
told from a forgotten one. Only on the torch backend, where ``torch.is_grad_enabled()`` tells a training call.
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
    """Records the ``training`` value each mode-sensitive layer of ``model`` was called with, and puts the layers
    named to :meth:`train` in training mode (see the module docstring)."""

    def __init__(self, model: Any):
        self.layers = mode_sensitive_layers(model)
        self.seen: dict[str, bool] = {}
        self.training: set[str] = set()  # layers whose training=None calls that record gradients get True
        self.not_given: set[str] = set()  # layers whose last call got no training argument (None)
        self._restore: list[Callable[[], None]] = []

    def install(self) -> None:
        if self._restore:
            return
        for layer in self.layers:
            self._restore.append(wrap_call(layer, self._recorder(layer.name)))

    def _recorder(self, name: str) -> Callable[[Callable], Callable]:
        seen, training, not_given = self.seen, self.training, self.not_given

        def make(original: Callable) -> Callable:
            def call(*args, **kwargs):
                if kwargs.get("training") is None:
                    not_given.add(name)
                    if name in training and _records_gradients():
                        kwargs["training"] = True
                else:
                    not_given.discard(name)
                seen[name] = bool(kwargs.get("training"))
                return original(*args, **kwargs)

            return call

        return make

    def train(self, names: tuple[str, ...]) -> tuple[list[str], dict[str, str]]:
        """Puts the named layers in training mode for the rest of the run; returns those it did and, for each one
        it could not, why."""
        done: list[str] = []
        refused: dict[str, str] = {}
        by_name = {layer.name: layer for layer in self.layers}
        for name in names:
            layer = by_name.get(name)
            if keras.backend.backend() != "torch":
                refused[name] = (f"on the {keras.backend.backend()} backend a training call cannot be told from an "
                                 "evaluation call: call the model with training=True in the training step")
            elif layer is None or not self._restore:
                refused[name] = "the mode check does not wrap this layer"
            elif not isinstance(layer, keras.layers.BatchNormalization):
                refused[name] = ("Keras hands Dropout-like layers training=False whether the loop passed it or "
                                 "not: call the model with training=True in the training step")
            elif name not in self.not_given:
                refused[name] = "the loop passed training=False: left as it asks"
            else:
                self.training.add(name)
                done.append(name)
        return done, refused

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


def _records_gradients() -> bool:
    import torch  # only called on the torch backend (see ModeRecorder.train)

    return torch.is_grad_enabled()
