"""Mixed precision on CPU: forward and loss under ``torch.autocast("cpu", dtype=torch.bfloat16)``, fp32 weights.

Recipe: PyTorch's automatic mixed precision (https://docs.pytorch.org/docs/stable/amp.html, "CPU Ops that can
autocast to bfloat16": ``linear``, ``conv`` run in bf16, the loss computed under autocast and backpropagated
without a GradScaler, which bf16's 8-bit exponent makes unnecessary). A GELU MLP 32-256-256-8 with LayerNorm,
Adam 1e-3, batch 64, 1,000 steps, on an 8-class blob task (3 blobs a class). bf16 keeps 8 bits of mantissa, so the
logits and the loss carry ~0.4% rounding noise on top of the batch noise.

Measured (unguarded, one thread, 2.9 s): training loss 1.78 over the first 10 batches (ln 8 = 2.08) -> 0.0034 (last
10%; the network memorises its 4,000 samples); held-out accuracy 0.90 under bf16 and in fp32 alike (chance 0.125).
The loss autocast returns is float32 (``cross_entropy`` runs in fp32 under autocast).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.healthy._common import Batches, tail_mean, teacher_classification

CASE = Case(name="torch_bf16_autocast", kind="healthy", cause=None, framework="torch",
            source="https://docs.pytorch.org/docs/stable/amp.html (CPU autocast to bfloat16)",
            symptom="none: bf16 forward; loss and gradients carry bf16 rounding noise")

CLASSES, STEPS = 8, 1000


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    x, y = teacher_classification(5000, 32, CLASSES, seed=121, clusters_per_class=3, spread=2.2)
    x_train, y_train = x[:4000], y[:4000]
    x_test, y_test = torch.from_numpy(x[4000:]), torch.from_numpy(y[4000:])
    model = nn.Sequential(nn.Linear(32, 256), nn.LayerNorm(256), nn.GELU(), nn.Linear(256, 256), nn.LayerNorm(256),
                          nn.GELU(), nn.Linear(256, CLASSES))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = Batches((x_train, y_train), 64, seed=122)
    guard = ctx.torch_guard(model, opt)
    losses = []
    for step in range(STEPS):
        xb, yb = (torch.from_numpy(a) for a in batches.next())
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        ctx.torch_step(guard, opt, loss, inputs=xb, targets=yb)
        losses.append(loss.item())
        ctx.log_scalar(step, loss=losses[-1])
    ctx.close(guard)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x_test).float()
    with torch.no_grad():
        logits_fp32 = model(x_test)
    return ctx.outcome(tail_mean(losses), model=model, steps=STEPS, first_loss=float(np.mean(losses[:10])),
                       trivial_loss=math.log(CLASSES), loss_dtype=str(loss.dtype),
                       test_accuracy=(logits.argmax(1) == y_test).float().mean().item(),
                       test_accuracy_fp32=(logits_fp32.argmax(1) == y_test).float().mean().item())
