"""A 43-20-1 sigmoid network trained online on targets between 0 and 100: every output saturates at 1.

Source: Stack Overflow 14982358, "Backpropagation algorithm (Matlab): output values are saturating to 1"
(https://stackoverflow.com/questions/14982358). Symptom: 43 input features standardized to mean 0 / std 1, a bias
input, 20 sigmoid hidden units and one sigmoid output node, trained one sample at a time with the delta rule on
targets "between 0 and 100"; the debug print shows an output of 1 against every target. Accepted answer: the
sigmoid's range is (0, 1), so targets above 1 are never reached; scale the targets into that range, here by dividing
them by 100. Cause: ``saturated_activation`` (the output sigmoid cannot reach the targets, LeCun et al. 1998,
"Efficient BackProp", sec. 4.5). Fix here: the targets divided by 100 (the predictions multiplied back), nothing
else.

Here: 600 samples of 43 standard-normal features; the target a noisy linear score mapped into [0, 100]; MSE, SGD
0.1, one sample per step, 3 epochs (1,800 steps). final_loss: the training-set MSE in the targets' units.
Measured (unguarded, one thread): see the module's figures below the CASE.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._torch_common import minibatches

CASE = Case(name="torch_so14982358_sigmoid_output_0_to_100", kind="faulty", cause="saturated_activation",
            framework="torch",
            source="https://stackoverflow.com/questions/14982358 (Backpropagation algorithm (Matlab): output values "
                   "are saturating to 1)",
            symptom="the sigmoid output node answers 1 for every sample; targets lie between 0 and 100",
            fix="targets divided by 100 into the sigmoid's range (accepted answer)")

FEATURES, HIDDEN, SAMPLES, EPOCHS, SCALE = 43, 20, 600, 3, 100.0


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((SAMPLES, FEATURES)).astype(np.float32)
    score = x @ rng.standard_normal(FEATURES).astype(np.float32) / np.sqrt(FEATURES)
    y = np.clip(50.0 + 15.0 * score + rng.normal(0.0, 3.0, SAMPLES), 0.0, 100.0).astype(np.float32)
    return x, y.reshape(-1, 1)


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    x, y = _data()
    scale = SCALE if ctx.fixed else 1.0
    model = nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.Sigmoid(), nn.Linear(HIDDEN, 1), nn.Sigmoid())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    guard = ctx.torch_guard(model, opt)
    step = 0
    for xb, yb in minibatches([x, y / scale], 1, epochs=EPOCHS, seed=1):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(xb), yb)
        loss.backward()
        ctx.torch_step(guard, opt, loss, inputs=xb, targets=yb)
        ctx.log_scalar(step, loss=loss.item() * scale ** 2, lr=0.1)
        step += 1
    ctx.close(guard)
    with torch.no_grad():
        final = float(nn.functional.mse_loss(model(torch.from_numpy(x)) * scale, torch.from_numpy(y)))
    return ctx.outcome(final, model=model, steps=step, trivial_loss=float(np.var(y)))
