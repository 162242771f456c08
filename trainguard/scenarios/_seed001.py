"""What seed 001's two experiments share: the y = x regression on 100 noisy points, Keras' Dense layers
(Glorot-uniform kernels, zero biases), MSE, SGD lr 0.1, batches of 20 (five steps an epoch), 20 epochs."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trainguard.scenarios.runner import Trace, minibatches, train

__all__ = ["BATCH_SIZE", "LR", "EPOCHS", "dense", "regression_data", "fit"]

BATCH_SIZE = 20
LR = 0.1
# 100 steps in all, well under a second: the small size (CI) runs them whole.
EPOCHS = {"full": 20, "small": 20}


def dense(fan_in: int, fan_out: int) -> nn.Linear:
    """``keras.layers.Dense``'s initialisation, so the run behaves as the blog's Keras run did."""
    layer = nn.Linear(fan_in, fan_out)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def regression_data(high: float, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """100 points evenly spread on [0, high]; the target is x, the input x plus Gaussian noise."""
    rng = np.random.RandomState(seed)
    x = np.linspace(0, high, 100, dtype=np.float32)
    z = x + rng.normal(0, noise, x.shape).astype(np.float32)
    return torch.from_numpy(z).unsqueeze(1), torch.from_numpy(x).unsqueeze(1)


def fit(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, seed: int, size: str,
        guard_policy: str | None, log: str | None) -> Trace:
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    order = torch.Generator().manual_seed(seed)
    return train(model=model, optimizer=optimizer,
                 batches=lambda epoch: minibatches(inputs, targets, BATCH_SIZE, order),
                 loss_fn=lambda x, y: nn.functional.mse_loss(model(x), y),
                 epochs=EPOCHS[size], guard_policy=guard_policy, log=log)
