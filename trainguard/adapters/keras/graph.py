"""TensorFlow graph steps: what the guard measures inside a compiled ``train_step`` leaves it through variables.

Under ``KERAS_BACKEND=tensorflow`` ``model.fit`` runs the step as a ``tf.function`` (XLA with
``jit_compile=True``, a ``tf.while_loop`` of steps with ``steps_per_execution > 1``): Python code in it runs once,
while it is traced, on symbolic tensors. The wrapper already keeps its measurements in variables (``tg_*``, as
``LossScaleOptimizer`` keeps its scale); the batch's size and data summary and the activation summaries are
written the same way, computed in the graph, the costly summaries only when the host asked for them (a flag
variable the host sets before a sampled step). The host reads the variables after the step, once per batch, as
Keras reads the step's logs.
"""
from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from trainguard.adapters.keras import collect, private
from trainguard.core.stats import TensorSummary

__all__ = ["in_graph", "GraphFlag", "GraphBatch", "GraphActivations", "summary"]


def in_graph() -> bool:
    """Whether the code runs while a TensorFlow graph is traced (a ``tf.function``), not eagerly."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not tf.executing_eagerly()


class GraphFlag:
    """A boolean the host sets between steps and a traced step reads (a float32 variable: XLA-compatible)."""

    def __init__(self, name: str):
        self.variable = keras.Variable(0.0, dtype="float32", trainable=False, name=name)
        self.value = False

    def set(self, value: bool) -> None:
        if value != self.value:  # written only when it changes: an assignment per step would be a copy per step
            self.variable.assign(1.0 if value else 0.0)
            self.value = value

    def on(self) -> Any:
        return self.variable > 0.5


def summary(x: Any) -> Any:
    """``[mean, std, abs max]`` of a floating-point tensor in the graph (population std, NaN/Inf kept), as
    :func:`collect.data_summary` takes it on the host; NaNs for integer data (class labels)."""
    import tensorflow as tf

    if x is None or not x.dtype.is_floating:
        return tf.fill([3], math.nan)
    x = tf.cast(x, tf.float32)
    mean = tf.reduce_mean(x)
    return tf.stack([mean, tf.sqrt(tf.reduce_mean(tf.square(x - mean))), tf.reduce_max(tf.abs(x))])


class GraphBatch:
    """The batch size and the inputs' and targets' summaries of the last traced step:
    ``[batch size, 3 x inputs, 3 x targets]`` in one variable; and, on the one step the host asks for it
    (:meth:`arm_capture`: a repair that needs a training batch on the host), the step's inputs themselves."""

    def __init__(self):
        import tensorflow as tf

        self.values = keras.Variable(np.full(7, np.nan, "float32"), trainable=False, name="trainguard_batch")
        self.due = GraphFlag("trainguard_data_due")
        self.floating = (False, False)  # whether the inputs, the targets are floating-point (seen when traced)
        self.traced = False  # a graph step recorded into it
        # The inputs of the step run while ``capture`` was set: a variable of any shape (not under XLA)
        self.capture = GraphFlag("trainguard_capture_due")
        self.held = tf.Variable(tf.zeros([0], tf.float32), shape=tf.TensorShape(None), trainable=False,
                                name="trainguard_held_inputs")
        self.held_dtype: str | None = None  # the inputs' dtype when the step was traced with a capture; else None

    def record(self, inputs: Any, targets: Any) -> None:
        """Called inside the traced step with its symbolic batch."""
        import tensorflow as tf

        x, y = collect.first_leaf(inputs), collect.first_leaf(targets)
        self.floating = tuple(t is not None and t.dtype.is_floating for t in (x, y))
        size = tf.cast(tf.shape(x)[0], tf.float32) if x is not None else tf.constant(math.nan)
        parts = tf.cond(self.due.on(), lambda: tf.concat([summary(x), summary(y)], 0),
                        lambda: tf.fill([6], math.nan))
        self.values.assign(tf.concat([tf.reshape(size, [1]), parts], 0))
        self.traced = True
        self.held_dtype = None
        if x is not None and x is inputs and x.dtype.is_floating and not private.in_xla_context():
            def keep():
                with tf.control_dependencies([self.held.assign(tf.cast(x, tf.float32))]):
                    return tf.constant(True)

            tf.cond(self.capture.on(), keep, lambda: tf.constant(False))
            self.held_dtype = x.dtype.name

    def arm_capture(self) -> bool:
        """Asks the next step to keep its inputs; False where the traced step cannot (several input tensors,
        integer inputs, XLA)."""
        if self.held_dtype is None:
            return False
        self.capture.set(True)
        return True

    def take_capture(self) -> np.ndarray | None:
        """The inputs the step after :meth:`arm_capture` kept (None if it kept none); disarms."""
        self.capture.set(False)
        value = self.held.numpy()
        self.held.assign(np.zeros([0], "float32"))
        return value.astype(self.held_dtype) if self.held_dtype is not None and value.ndim >= 1 and value.size \
            else None

    def read(self) -> tuple[int | None, TensorSummary | None, TensorSummary | None]:
        """``(batch size, inputs summary, targets summary)`` of the last step: the summaries only when the host
        asked for them before it (``due``), as on the host, where a NaN or Inf in the data shows in them."""
        v = collect.to_numpy(self.values).astype(np.float64)
        size = int(v[0]) if math.isfinite(v[0]) else None
        parts = [TensorSummary(*map(float, v[1 + 3 * i:4 + 3 * i])) if self.due.value and floating else None
                 for i, floating in enumerate(self.floating)]
        return size, parts[0], parts[1]


class GraphActivations:
    """The activation probe inside a traced step: per probed layer ``[written, dead, saturated, std]`` (NaN
    where a kind has none), computed only on the steps the host armed the probe for."""

    def __init__(self, count: int):
        import tensorflow as tf

        self.rows = [tf.Variable([0.0, math.nan, math.nan, math.nan], trainable=False, name=f"trainguard_activation_{i}")
                     for i in range(count)]
        self.armed = GraphFlag("trainguard_probe_armed")

    def record(self, index: int, kind: str, output: Any, bounds: dict[str, float]) -> None:
        """Called inside the traced step with the layer's symbolic output."""
        import tensorflow as tf

        row = self.rows[index]

        def write():
            out = tf.cast(output, tf.float32)
            std = tf.math.reduce_std(out)
            dead = saturated = tf.constant(math.nan)
            if kind == "relu":
                units = tf.reshape(out, [tf.shape(out)[0], -1]) if out.shape.rank and out.shape.rank > 1 \
                    else tf.reshape(out, [1, -1])
                dead = 1.0 - tf.reduce_mean(tf.cast(tf.reduce_any(units > 0, axis=0), tf.float32))
            elif kind == "sigmoid":
                outside = tf.logical_or(out < bounds["sigmoid_low"], out > bounds["sigmoid_high"])
                saturated = tf.reduce_mean(tf.cast(outside, tf.float32))
            elif kind == "tanh":
                saturated = tf.reduce_mean(tf.cast(tf.abs(out) > bounds["tanh_high"], tf.float32))
            row.assign(tf.stack([tf.constant(1.0), dead, saturated, std]))
            return tf.constant(True)

        tf.cond(self.armed.on(), write, lambda: tf.constant(False))

    def arm(self) -> None:
        for row in self.rows:
            row.assign([0.0, math.nan, math.nan, math.nan])
        self.armed.set(True)

    def disarm(self) -> None:
        self.armed.set(False)

    def read(self) -> list[tuple[float | None, float | None, float] | None]:
        """Per probed layer ``(dead, saturated, std)`` of the armed step, None where it was not called."""
        out: list[tuple[float | None, float | None, float] | None] = []
        for row in self.rows:
            written, dead, saturated, std = (float(v) for v in row.numpy())
            out.append(None if written < 0.5 else (None if math.isnan(dead) else dead,
                                                   None if math.isnan(saturated) else saturated, std))
        return out
