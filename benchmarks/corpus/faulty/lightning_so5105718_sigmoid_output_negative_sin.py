"""A 5-6-1 sigmoid network taught sin of the sum of its inputs: it never answers a negative value.

Source: Stack Overflow 5105718, "Multi-layer neural network won't predict negative values"
(https://stackoverflow.com/questions/5105718). Symptom: a multilayer perceptron (5 inputs: four values from
{-1, 0, 1} and a bias of 1; 6 sigmoid hidden units; one sigmoid output; learning rate 0.1, weights updated once an
epoch) should predict sin of the sum of the inputs; it "will never predict a negative value", though many targets
are negative, and predicts the positive ones well. Accepted answer: the logistic function's outputs lie in [0, 1];
use the hyperbolic tangent, whose range is [-1, 1], on the output. Cause: ``saturated_activation`` (the output
sigmoid cannot reach the negative half of the targets; LeCun et al. 1998, "Efficient BackProp", sec. 4.5). Fix
here: a tanh output unit, nothing else. The targets' mean is inside [0, 1] and their |max| is 0.91: only their
minimum (-0.91) shows them out of the sigmoid's range.

Here: a LightningModule with that network (``forward``, called as ``self(x)`` in ``training_step``) on the 81
vectors of {-1, 0, 1}^4 (the bias input appended), one batch of all 81 a step (an update an epoch), MSE, SGD 0.1
with momentum 0.9 (so that the fixed twin converges within 3,000 steps), ``CSVLogger(save_dir=outdir)``.
final_loss: MSE over the 81 vectors after training.
Measured (unguarded, one thread, ~15 s a run): faulty 0.259 (the negative half of the targets out of reach:
E[y^2; y < 0] = 0.25), fixed 0.0028; the trivial predictor's 0.50.
"""
from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._lightning_common import fit_on_cpu

CASE = Case(name="lightning_so5105718_sigmoid_output_negative_sin", kind="faulty", cause="saturated_activation",
            framework="lightning",
            source="https://stackoverflow.com/questions/5105718 (Multi-layer neural network won't predict negative "
                   "values)",
            symptom="a sigmoid-output MLP regressing sin(sum of inputs) never predicts a negative value",
            fix="a tanh output unit, range [-1, 1] (accepted answer)")

STEPS, LR = 3000, 0.1


def _module_class() -> type:
    import lightning.pytorch as pl

    class SinePerceptron(pl.LightningModule):
        def __init__(self, output: type[nn.Module]) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(5, 6), nn.Sigmoid(), nn.Linear(6, 1), output())
            self.losses: list[float] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = nn.functional.mse_loss(self(x), y)
            self.losses.append(loss.item())
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=LR, momentum=0.9)

    return SinePerceptron


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    values = torch.tensor(list(itertools.product([-1.0, 0.0, 1.0], repeat=4)))
    x = torch.cat([values, torch.ones(len(values), 1)], dim=1)
    y = torch.sin(values.sum(dim=1, keepdim=True))
    model = _module_class()(nn.Tanh if ctx.fixed else nn.Sigmoid)
    fit_on_cpu(ctx, model, DataLoader(TensorDataset(x, y), batch_size=len(x)), max_steps=STEPS)
    with torch.no_grad():
        final = float(nn.functional.mse_loss(model.net(x), y))
    return ctx.outcome(final, model=model, steps=len(model.losses), first_loss=model.losses[0],
                       trivial_loss=float(y.var(unbiased=False)))
