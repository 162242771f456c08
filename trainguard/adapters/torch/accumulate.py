"""Gradient accumulation in a plain loop: ``guard.accumulate(loss, ...)`` per micro-batch, ``guard.step()`` at the
optimizer step.

The contract: pass each micro-batch's loss as the loss function returns it (its mean over the micro-batch), not
the loss divided by the accumulation steps that goes to ``backward()``. The step's loss is then the mean of the
micro-batch losses, weighted by their batch sizes when every micro-batch gave one: the true mean loss of the
optimizer step, comparable with an unaccumulated run of the same total batch.

Everything stays on the device until the step's single fetch: a micro-batch costs a detach and, on the first
steps the schedule samples, three reductions per data tensor. Where reading a value is free (CPU), a non-finite
micro-batch loss is located at once, with that micro-batch's inputs and the weights of its forward.

The likely mistake, the loss already divided by the accumulation steps, is caught where it shows: when every
micro-batch's loss of a step comes out of a division by a plain number equal to the step's count of micro-batches
(autograd keeps the divisor: ``grad_fn._saved_other``), the guard warns once (:meth:`MicroBatches.looks_divided`).
"""
from __future__ import annotations

from typing import Any

import torch

from trainguard.adapters.torch import collect

__all__ = ["MicroBatches"]


class MicroBatches:
    """The micro-batches of the optimizer step being accumulated (see the module docstring)."""

    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []
        self.sizes: list[int | None] = []
        self.summaries: dict[str, list[tuple[torch.Tensor, int]]] = {"inputs": [], "targets": []}
        self.inputs: Any = None  # the last micro-batch's, for a deferred search of a non-finite output
        self.targets: Any = None
        self.first_nonfinite: int | None = None  # found on the host where that is free (CPU)
        self.first_nonfinite_module: str | None = None
        self.divisors: list[float | None] = []  # what each loss was last divided by, when a plain number

    def __len__(self) -> int:
        return len(self.losses)

    def add(self, loss: torch.Tensor, batch_size: int | None, inputs: Any, targets: Any) -> None:
        self.divisors.append(_scalar_divisor(loss))
        loss = loss.detach()
        self.losses.append(loss.float().mean() if loss.dim() else loss.float())
        self.sizes.append(batch_size)
        self.inputs, self.targets = inputs, targets

    def looks_divided(self) -> bool:
        """Whether every loss was divided by the step's count of micro-batches (``loss / accumulation_steps``)."""
        n = len(self.losses)
        return n > 1 and all(d == n for d in self.divisors)

    def add_summaries(self, inputs: Any, targets: Any) -> None:
        """The data summaries of the last micro-batch (on the steps the schedule samples)."""
        for key, data in (("inputs", inputs), ("targets", targets)):
            if isinstance(data, torch.Tensor) and data.is_floating_point() and data.numel() > 0:
                self.summaries[key].append((collect.data_summary(data), data.numel()))

    def batch_size(self) -> int | None:
        """The step's total batch size, when every micro-batch gave one."""
        return None if any(n is None for n in self.sizes) else sum(self.sizes)

    def losses_vector(self, device: torch.device) -> torch.Tensor:
        return torch.stack([loss.to(device) for loss in self.losses])

    def mean_loss(self, losses: torch.Tensor) -> torch.Tensor:
        """The step's loss from :meth:`losses_vector`: weighted by batch size when all are known."""
        sizes = self.sizes
        if len(sizes) > 1 and all(n is not None for n in sizes) and len(set(sizes)) > 1:
            weights = torch.tensor(sizes, dtype=torch.float32, device=losses.device)
            return (losses * weights).sum() / weights.sum()
        return losses.mean()

    def summary(self, key: str) -> torch.Tensor | None:
        """``[mean, std, abs max, min, max]`` over every micro-batch's data, pooled from their summaries."""
        parts = self.summaries[key]
        if not parts:
            return None
        if len(parts) == 1:
            return parts[0][0]
        stacked = torch.stack([summary for summary, _ in parts])
        weights = torch.tensor([n for _, n in parts], dtype=torch.float32, device=stacked.device)
        weights = weights / weights.sum()
        mean = (stacked[:, 0] * weights).sum()
        second = ((stacked[:, 1].square() + stacked[:, 0].square()) * weights).sum()
        std = (second - mean.square()).clamp_min(0.0).sqrt()
        return torch.stack([mean, std, stacked[:, 2].max(), stacked[:, 3].min(), stacked[:, 4].max()])


def _scalar_divisor(loss: torch.Tensor) -> float | None:
    """The plain number ``loss`` was last divided by (``loss / k``), read from autograd's saved operand on the host;
    None for anything else (no graph, a division by a device tensor, a graph already freed by ``backward``)."""
    fn = loss.grad_fn
    if fn is None or fn.name() != "DivBackward0":
        return None
    try:
        other = fn._saved_other
    except RuntimeError:  # saved tensors freed by a backward already run
        return None
    if isinstance(other, torch.Tensor) and other.device.type == "cpu" and other.numel() == 1:
        return float(other)
    return None
