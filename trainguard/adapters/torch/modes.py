"""Module modes: BatchNorm and Dropout layers left in eval mode while the model trains.

A BatchNorm in eval mode normalises with its running statistics and never updates them; a Dropout in eval
mode drops nothing. Both are silent when ``model.eval()`` is left on in a training loop (seed 000).

A layer in eval mode matters only while gradients pass through it. A frozen feature extractor (every parameter
up to and including the layer has ``requires_grad=False``) kept in eval mode on purpose, so that its BatchNorm
keeps the pretrained statistics (the PyTorch transfer-learning tutorial's "ConvNet as fixed feature extractor"),
is not reported; once it is unfrozen, it is. Registration order stands in for forward order, as elsewhere in the
guard.
"""
from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

__all__ = ["MODE_SENSITIVE", "ModeSensitive", "mode_sensitive_modules", "eval_mode_modules"]

# The layers whose forward depends on train/eval mode (subclasses included: SyncBatchNorm, AlphaDropout...).
MODE_SENSITIVE: tuple[type[nn.Module], ...] = (_BatchNorm, _DropoutNd)

# (name, module, the parameters registered up to and including it)
ModeSensitive = tuple[str, nn.Module, tuple[nn.Parameter, ...]]


def mode_sensitive_modules(model: nn.Module) -> list[ModeSensitive]:
    found: list[ModeSensitive] = []
    upstream: list[nn.Parameter] = []
    for name, module in model.named_modules():
        upstream.extend(module.parameters(recurse=False))
        if isinstance(module, MODE_SENSITIVE):
            found.append((name, module, tuple(upstream)))
    return found


def eval_mode_modules(modules: list[ModeSensitive]) -> tuple[str, ...]:
    """Names of the mode-sensitive modules now in eval mode that gradients pass through (the guard asks while
    the model trains)."""
    return tuple(name for name, m, upstream in modules
                 if not m.training and any(p.requires_grad for p in upstream))
