"""Every use the Keras adapter makes of Keras internals, in one place, so that a Keras release that moves one
breaks one function here (tested on Keras 3.15). Each names the attribute it reads and why nothing public does.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import keras

__all__ = ["learning_rate_slot", "iterations_variable", "velocities", "tracked_trainable_variables",
           "scaled_learning_rate", "current_learning_rate", "nested_layers", "METRICS_UPDATE", "jax_state",
           "sync_jax_state", "in_xla_context"]

# The JAX trainer's method that receives the unscaled batch loss inside the traced step (see callback.py).
METRICS_UPDATE = "_update_metrics_variables"


def learning_rate_slot(optimizer: keras.optimizers.Optimizer) -> Any:
    """``optimizer._learning_rate``: the float, variable, schedule or callable as given, where the public
    ``learning_rate`` property returns its current value."""
    return optimizer._learning_rate


def iterations_variable(optimizer: keras.optimizers.Optimizer) -> Any:
    """``optimizer._iterations``: the step counter variable itself (read through the JAX trainer's state)."""
    return optimizer._iterations


def velocities(optimizer: keras.optimizers.Optimizer) -> Any:
    """Adam's second-moment slots (``_velocities``), None for other optimizers: Keras has no public accessor."""
    return getattr(optimizer, "_velocities", None)


def tracked_trainable_variables(optimizer: keras.optimizers.Optimizer) -> list[Any]:
    """The variables the optimizer was built with, in its order (``_trainable_variables``)."""
    return list(optimizer._trainable_variables)


@contextlib.contextmanager
def scaled_learning_rate(optimizer: keras.optimizers.Optimizer, scale: Any) -> Iterator[None]:
    """The optimizer's learning rate times ``scale`` for the updates made inside: the optimizer reads
    ``_learning_rate`` through a callable, so one is put in its place (``object.__setattr__``: Keras' attribute
    tracking would otherwise record it) and the original is put back."""
    base = optimizer._learning_rate
    object.__setattr__(optimizer, "_learning_rate", lambda: current_learning_rate(base, optimizer) * scale)
    try:
        yield
    finally:
        object.__setattr__(optimizer, "_learning_rate", base)


def current_learning_rate(base: Any, optimizer: keras.optimizers.Optimizer) -> Any:
    """The current value of a learning-rate slot (a float, a variable, a schedule or a callable)."""
    if isinstance(base, keras.optimizers.schedules.LearningRateSchedule):
        return base(optimizer.iterations)
    if callable(base) and not isinstance(base, keras.Variable):
        return base()
    return base


def nested_layers(model: Any) -> list[Any] | None:
    """Every layer inside ``model``, nested ones included (``_flatten_layers``), or None where it is missing."""
    flatten = getattr(model, "_flatten_layers", None)
    return list(flatten(include_self=False, recursive=True)) if callable(flatten) else None


def jax_state(model: keras.Model) -> tuple[dict[str, Any] | None, bool]:
    """The JAX trainer's state during ``fit`` (``_jax_state``; the variables themselves are emptied during an
    epoch) and whether it was synced back to the variables (``_jax_state_synced``)."""
    return getattr(model, "_jax_state", None), getattr(model, "_jax_state_synced", True)


def sync_jax_state(model: keras.Model) -> None:
    """Writes the JAX trainer's state back into the variables, when there is one (``jax_state_sync``)."""
    sync = getattr(model, "jax_state_sync", None)
    if callable(sync) and getattr(model, "_jax_state", None):
        sync()


def in_xla_context() -> bool:
    """Whether a TensorFlow graph is being traced for XLA (``jit_compile=True``), where a host callback
    (``tf.py_function``) cannot run: ``control_flow_util.GraphOrParentsInXlaContext``, TensorFlow's own test."""
    from tensorflow.python.framework import ops as tf_ops
    from tensorflow.python.ops import control_flow_util

    return control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph())
