"""The Keras 3 adapter: a callback for ``model.fit`` and a guarded optimizer for custom loops, on every backend.

It only translates: Keras tensors into :class:`~trainguard.core.stats.StepStats`, and the core policies' orders
into what the wrapped optimizer does to each update. See docs/keras.md.
"""
from __future__ import annotations

from trainguard.adapters.keras.callback import Guard
from trainguard.adapters.keras.optimizer import GuardedOptimizer

__all__ = ["Guard", "GuardedOptimizer"]
