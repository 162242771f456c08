"""Module modes: BatchNorm and Dropout layers left in eval mode while the model trains.

A BatchNorm in eval mode normalises with its running statistics and never updates them; a Dropout in eval
mode drops nothing. Both are silent when ``model.eval()`` is left on in a training loop (seed 000).
"""
from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

__all__ = ["MODE_SENSITIVE", "mode_sensitive_modules", "eval_mode_modules"]

# The layers whose forward depends on train/eval mode (subclasses included: SyncBatchNorm, AlphaDropout...).
MODE_SENSITIVE: tuple[type[nn.Module], ...] = (_BatchNorm, _DropoutNd)


def mode_sensitive_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, MODE_SENSITIVE)]


def eval_mode_modules(modules: list[tuple[str, nn.Module]]) -> tuple[str, ...]:
    """Names of the mode-sensitive modules now in eval mode (the guard asks while gradients flow)."""
    return tuple(name for name, m in modules if not m.training)
