"""``trainguard.hf``: the HF Transformers callback (``trainguard.adapters.torch.integrations.hf``).

Needs the ``hf`` extra (``pip install 'trainguard[hf]'``). See docs/integrations.md.
"""
from __future__ import annotations

from trainguard.adapters.torch.integrations.hf import Guard

__all__ = ["Guard"]
