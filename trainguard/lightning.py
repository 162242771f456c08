"""``trainguard.lightning``: the Lightning callback (``trainguard.adapters.torch.integrations.lightning``).

Needs the ``lightning`` extra (``pip install 'trainguard[lightning]'``). See docs/integrations.md.
"""
from __future__ import annotations

from trainguard.adapters.torch.integrations.lightning import Guard

__all__ = ["Guard"]
