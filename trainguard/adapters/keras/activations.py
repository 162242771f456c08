"""Activation health of a Keras model, sampled during one training forward pass.

The probe wraps the ``call`` of each layer whose activation is ReLU, sigmoid or tanh (``Dense(32,
activation="sigmoid")``, ``Activation("relu")``, ``ReLU()``) and of the model's last layer, and summarises the
output of the first call after :meth:`ActivationProbe.arm` (the guard arms it before sampled steps only):

- relu: the fraction of units (all entries but the batch axis) that are <= 0 for every sample of the batch;
- sigmoid / tanh: the fraction of entries whose *input* lies beyond trainguard's saturation bounds
  (|x| > 5 for sigmoid, |x| > 2.5 for tanh, where the slope is under 3% of its maximum), read off the output, since the activation is monotonic:
  sigmoid(x) outside [sigmoid(-5), sigmoid(5)], |tanh(x)| > tanh(2.5);
- the last layer as ``"(output)"``, kind ``"output"``: the std of the predictions (a collapse to a constant).

Eager steps are summarised on the host (numpy). Inside a TensorFlow graph step (``fit``'s ``tf.function``, XLA)
the same summaries are computed in the graph on armed steps and leave it through variables
(:class:`~trainguard.adapters.keras.graph.GraphActivations`). Under a compiled JAX step the call runs on tracers
and records nothing here: the guard runs one extra inference pass on the step's inputs instead (callback.py).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import keras
import numpy as np

from trainguard.adapters.keras.collect import to_numpy
from trainguard.adapters.keras.graph import GraphActivations, in_graph
from trainguard.adapters.keras.modes import all_layers, wrap_call
from trainguard.core.stats import ActivationStats

__all__ = ["ActivationProbe", "activation_kind", "OUTPUT", "SIGMOID_SATURATION", "TANH_SATURATION"]

OUTPUT = "(output)"
SIGMOID_SATURATION = 5.0
TANH_SATURATION = 2.5
_SIGMOID_LOW, _SIGMOID_HIGH = 1 / (1 + math.exp(SIGMOID_SATURATION)), 1 / (1 + math.exp(-SIGMOID_SATURATION))
_TANH_HIGH = math.tanh(TANH_SATURATION)
_BOUNDS = {"sigmoid_low": _SIGMOID_LOW, "sigmoid_high": _SIGMOID_HIGH, "tanh_high": _TANH_HIGH}


def activation_kind(layer: Any) -> str | None:
    if isinstance(layer, keras.layers.ReLU):
        return "relu"
    name = getattr(getattr(layer, "activation", None), "__name__", "")
    return {"relu": "relu", "relu6": "relu", "sigmoid": "sigmoid", "tanh": "tanh"}.get(name)


def _recurrent_cell(layer: Any) -> bool:
    return hasattr(layer, "state_size") and not isinstance(layer, keras.layers.RNN)


def _summary(kind: str, output: Any) -> tuple[float | None, float | None, float]:
    """``(dead fraction, saturated fraction, output std)``."""
    out = to_numpy(output).astype(np.float64)
    std = float(out.std()) if out.size else math.nan
    dead = saturated = None
    if kind == "relu" and out.size:
        units = out.reshape(out.shape[0], -1) if out.ndim > 1 else out.reshape(1, -1)
        dead = float(1.0 - np.mean(np.any(units > 0, axis=0)))
    elif kind == "sigmoid" and out.size:
        saturated = float(np.mean((out < _SIGMOID_LOW) | (out > _SIGMOID_HIGH)))
    elif kind == "tanh" and out.size:
        saturated = float(np.mean(np.abs(out) > _TANH_HIGH))
    return dead, saturated, std


class ActivationProbe:
    def __init__(self, model: Any):
        layers = [layer for layer in all_layers(model) if not hasattr(layer, "layers")]
        # A recurrent cell runs inside its layer's loop (a graph while loop, a JAX scan): its layer is probed instead.
        layers = [layer for layer in layers if not _recurrent_cell(layer)]
        self.targets = [(layer.name, kind, layer) for layer in layers if (kind := activation_kind(layer))]
        top = getattr(model, "layers", None)
        if top and not hasattr(top[-1], "layers"):
            self.targets.append((OUTPUT, "output", top[-1]))
        self.records: dict[str, tuple[float | None, float | None, float]] = {}
        self.armed = False
        self.error: BaseException | None = None
        self._restore: list[Callable[[], None]] = []
        self.graph: GraphActivations | None = None  # TensorFlow: the in-graph records
        self._graph_traced = False

    def install(self) -> None:
        if self._restore:
            return
        if keras.backend.backend() == "tensorflow":
            self.graph = GraphActivations(len(self.targets))
        for i, (name, kind, layer) in enumerate(self.targets):
            self._restore.append(wrap_call(layer, self._recorder(i, name, kind)))

    def _recorder(self, index: int, name: str, kind: str) -> Callable[[Callable], Callable]:
        def make(original: Callable) -> Callable:
            def call(*args, **kwargs):
                result = original(*args, **kwargs)
                output = result[0] if isinstance(result, (list, tuple)) else result  # with return_state: the output
                if self.graph is not None and in_graph():
                    self.graph.record(index, kind, output, _BOUNDS)
                    self._graph_traced = True
                elif self.armed and name not in self.records:
                    self._record(name, kind, output)
                return result

            return call

        return make

    def _record(self, name: str, kind: str, output: Any) -> None:
        try:
            self.records[name] = _summary(kind, output)
        except Exception as e:  # noqa: BLE001 - a tracer (compiled step) or an exotic output: not summarised
            if self.error is None and "Tracer" not in type(output).__name__:
                self.error = e

    def arm(self) -> None:
        self.records = {}
        self.armed = True
        if self.graph is not None:
            self.graph.arm()

    def disarm(self) -> None:
        self.armed = False
        if self.graph is not None:
            self.graph.disarm()

    def pause(self) -> bool:
        """Disarms for an evaluation pass inside training; returns whether it was armed."""
        armed = self.armed
        self.disarm()
        return armed

    def resume(self, armed: bool) -> None:
        self.armed = armed
        if self.graph is not None:
            self.graph.armed.set(armed)

    def collect(self) -> tuple[ActivationStats, ...]:
        """The records of the armed forward pass, in the model's layer order; disarms."""
        self.disarm()
        records, self.records = self.records, {}
        if self._graph_traced:
            for (name, _, _), row in zip(self.targets, self.graph.read()):
                if row is not None and name not in records:
                    records[name] = row
        return tuple(ActivationStats(name, kind, *records[name]) for name, kind, _ in self.targets
                     if name in records)

    def remove(self) -> None:
        for restore in reversed(self._restore):
            restore()
        self._restore = []
