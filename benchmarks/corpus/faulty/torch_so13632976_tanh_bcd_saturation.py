"""A 4-20-7 tanh network learning the BCD -> 7-segment code with targets of exactly +-1: output units saturate on
the wrong side and stop learning.

Source: https://stackoverflow.com/q/13632976 ("Neural Network with tanh wrong saturation with normalized data"). The
reporter's network: 4 inputs, 20 tanh hidden units, 7 tanh outputs, data "normalized: 0 is -1 and 1 is 1", trained
by backpropagation one pattern at a time.
Symptom: "the neuron saturates wrong. If the desired output is 1 and the real output is -1, the error is 2 ... When
I multiply it by the derivative of the activation function ... the error becomes almost 0".
Accepted answer: scale the activation, f(x) = 1.7159 tanh(2/3 x) (LeCun et al., "Efficient BackProp"), so that the
targets +-1 sit where the function still bends instead of at its asymptotes. The fixed twin uses it for both
layers; nothing else changes.

Here: the 10 BCD digits, SGD(lr=0.5) one pattern at a time in random order, MSE, 300 epochs; seed 1, a run in which
a unit ends up saturated on the wrong side, as reported.
extra: the share of output pre-activations beyond |2.5| (tanh' < 0.03) and of output signs that are wrong.
Measured (unguarded, one thread): faulty 0.115 (mean loss over the last 10% of steps), 46% of output
pre-activations beyond |2.5|, 2.9% of output signs wrong; fixed 0.012, 1.4% beyond |2.5|, none wrong.
"""
from __future__ import annotations

import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._torch_common import tail_mean

CASE = Case(name="torch_so13632976_tanh_bcd_saturation", kind="faulty", cause="saturated_activation",
            framework="torch",
            source="https://stackoverflow.com/q/13632976 (Neural Network with tanh wrong saturation)",
            symptom="tanh output saturates at the wrong sign; error x tanh' is ~0 so it never recovers",
            fix="scaled activation 1.7159 * tanh(2/3 x) (accepted answer, LeCun's Efficient BackProp)")

SEGMENTS = ["1111110", "0110000", "1101101", "1111001", "0110011", "1011011", "1011111", "1110000", "1111111",
            "1111011"]
EPOCHS, LR = 300, 0.5


class ScaledTanh(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.7159 * torch.tanh(2.0 / 3.0 * x)


def run(ctx: RunContext) -> Outcome:
    seeded(1)
    x = torch.tensor([[1.0 if (d >> b) & 1 else -1.0 for b in (3, 2, 1, 0)] for d in range(10)])
    y = torch.tensor([[1.0 if c == "1" else -1.0 for c in SEGMENTS[d]] for d in range(10)])
    act = ScaledTanh if ctx.fixed else nn.Tanh
    model = nn.Sequential(nn.Linear(4, 20), act(), nn.Linear(20, 7), act())
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    guard = ctx.torch_guard(model, opt)
    losses, step = [], 0
    for _epoch in range(EPOCHS):
        for i in torch.randperm(10).tolist():
            opt.zero_grad()
            loss = ((model(x[i:i + 1]) - y[i:i + 1]) ** 2).mean()
            loss.backward()
            ctx.torch_step(guard, opt, loss, inputs=x[i:i + 1], targets=y[i:i + 1])
            losses.append(loss.item())
            ctx.log_scalar(step, loss=losses[-1], lr=LR)
            step += 1
    ctx.close(guard)
    with torch.no_grad():
        out = model(x)
        pre = model[2](model[1](model[0](x)))
    return ctx.outcome(tail_mean(losses), model=model, steps=step,
                       output_saturated=(pre.abs() > 2.5).float().mean().item(),
                       wrong_signs=(out.sign() != y).float().mean().item())
