"""The PyTorch adapter: ``Guard`` watches a training loop in place of ``optimizer.step()``."""
from __future__ import annotations

from trainguard.adapters.torch.guard import Guard, Repairer, StepContext

__all__ = ["Guard", "StepContext", "Repairer"]
