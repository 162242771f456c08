"""Seed 004: a loss whose scale depends on the batch size spikes once per epoch, at the partial last batch.

The user trains an SSD detector whose multi-task loss already averages over the ground-truth boxes in the
batch, and Keras divides the loss by the batch size a second time. The loss is then inversely proportional to
the batch size; the dataset size is not a multiple of the batch size, so the last batch of every epoch is small,
its loss and gradient are several times too large, and momentum carries the kick into the next steps. The loss
curve shows a sharp spike exactly once per pass over the data (every 1390 steps in the report).

Here: a detection-like regression where each sample carries 1 to 4 objects (4 box slots, a presence mask), an
MLP predicts the 4 slots, the loss sums the squared errors of the present objects and divides by their count,
and the training loop divides by ``len(x)`` again. 16 full batches of 32 and one of 4 per epoch; SGD with
momentum 0.9. The healthy twin leaves out the second division (a proper mean over the objects); nothing else
changes.
"""
from __future__ import annotations

import math
import statistics

import numpy as np
import torch
from torch import nn

from trainguard.scenarios.runner import Scenario, ScenarioResult, check_size, finish, minibatches, seeded, train

__all__ = ["SCENARIO", "run"]

SEED = 4
BATCH_SIZE = 32
N_SAMPLES = 16 * BATCH_SIZE + 4  # the last batch of each epoch holds 4 samples
FEATURES, SLOTS = 10, 4
LR, MOMENTUM = 0.1, 0.9
EPOCHS = {"full": 30, "small": 10}
# The partial batch's loss over the median loss of its epoch's full batches: a spike above this ratio.
SPIKE_RATIO = 3.0
HEALTHY_LOSS = 0.1


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs, and targets holding 4 box values then 4 presence flags (at least one object per sample)."""
    rng = np.random.RandomState(SEED)
    x = rng.standard_normal((N_SAMPLES, FEATURES)).astype(np.float32)
    boxes = np.tanh(x @ rng.standard_normal((FEATURES, SLOTS)) / math.sqrt(FEATURES)).astype(np.float32)
    present = (rng.uniform(size=(N_SAMPLES, SLOTS)) < 0.5).astype(np.float32)
    present[np.arange(N_SAMPLES), rng.randint(0, SLOTS, N_SAMPLES)] = 1.0
    return torch.from_numpy(x), torch.from_numpy(np.concatenate([boxes, present], axis=1))


def detection_loss(predicted: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """SSD-style: squared errors of the present objects, summed, divided by the number of objects."""
    boxes, present = targets[:, :SLOTS], targets[:, SLOTS:]
    return ((predicted - boxes) ** 2 * present).sum() / present.sum()


def run(healthy: bool = False, guard_policy: str | None = None, log: str | None = None,
        size: str = "full") -> ScenarioResult:
    check_size(size)
    x, y = _data()
    with seeded(SEED):
        model = nn.Sequential(nn.Linear(FEATURES, 32), nn.Tanh(), nn.Linear(32, SLOTS))
        optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        order = torch.Generator().manual_seed(SEED)

        def loss_fn(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            loss = detection_loss(model(xb), yb)
            return loss if healthy else loss / len(xb)  # the fault: the loop divides by the batch size again

        trace = train(model=model, optimizer=optimizer, batches=lambda epoch: minibatches(x, y, BATCH_SIZE, order),
                      loss_fn=loss_fn, epochs=EPOCHS[size], guard_policy=guard_policy, log=log)
    ratios = _partial_batch_ratios(trace.losses, trace.batch_sizes, trace.epochs)
    median_ratio = statistics.median(ratios) if ratios else math.nan
    spikes = sum(r > SPIKE_RATIO for r in ratios)
    # The loss at full batches, scaled back to a per-object mean, says whether the model learned at all.
    full = [v * (1 if healthy else b) for v, b in zip(trace.losses, trace.batch_sizes) if b == BATCH_SIZE]
    final = statistics.median(full[-16:]) if full else math.nan
    failed = spikes > len(ratios) // 2 or not final < HEALTHY_LOSS
    outcome = (f"spike at the partial batch in {spikes}/{len(ratios)} epochs ({median_ratio:.1f}x), "
               f"loss per object {final:.2g}")
    metrics = {"spikes": float(spikes), "epochs": float(len(ratios)), "median_spike_ratio": median_ratio,
               "per_object_loss": final, "steps_per_epoch": float(math.ceil(N_SAMPLES / BATCH_SIZE))}
    return finish(SCENARIO.name, healthy, guard_policy, trace, failed=failed, outcome=outcome, metrics=metrics)


def _partial_batch_ratios(losses: list[float], batch_sizes: list[int], epochs: list[int]) -> list[float]:
    """For each epoch after the first, the partial batch's loss over the median of that epoch's full batches."""
    ratios = []
    for epoch in sorted(set(epochs))[1:]:
        full = [v for v, b, e in zip(losses, batch_sizes, epochs) if e == epoch and b == BATCH_SIZE]
        partial = [v for v, b, e in zip(losses, batch_sizes, epochs) if e == epoch and b < BATCH_SIZE]
        if full and partial and statistics.median(full) > 0:
            ratios.append(partial[0] / statistics.median(full))
    return ratios


SCENARIO = Scenario(
    name="batch_size_dependent_loss", seed_id="004", seed_file="004_8b5c8b88bd83e6ef",
    cause="batch_size_dependent_loss",
    description="loss averaged over the objects, then divided by the batch size again; 516 samples in batches "
                "of 32, SGD momentum 0.9: a spike once per epoch at the partial batch",
    healthy_twin="the loss averaged once (no second division by the batch size)", run=run)
