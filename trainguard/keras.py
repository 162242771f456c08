"""``trainguard.keras``: the Keras 3 guard.

>>> model.fit(x, y, callbacks=[trainguard.keras.Guard(policy="auto", log="runs/exp.jsonl")])   # doctest: +SKIP

Custom training loops use :class:`GuardedOptimizer` in place of the optimizer (docs/keras.md).
"""
from __future__ import annotations

from trainguard.adapters.keras import Guard, GuardedOptimizer

__all__ = ["Guard", "GuardedOptimizer"]
