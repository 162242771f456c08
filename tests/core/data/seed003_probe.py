"""Regenerates the seed 003 streams the detector tests replay (run from the repository root):

    .venv/bin/python tests/core/data/seed003_probe.py            # -> seed003_exploding.csv (goes NaN at step 7)
    .venv/bin/python tests/core/data/seed003_probe.py --healthy  # -> seed003_healthy.csv (standardized targets)

The set-up of seed 003: MLP 20 -> 25 (ReLU, he_uniform) -> 1, SGD lr 0.01 momentum 0.9, make_regression-like
targets on a scale of hundreds (noise 0.1), 500 training samples, batch 32. The healthy twin standardizes the
targets and trains 100 epochs (1600 steps). One row per step: loss, global gradient norm, and per parameter tensor
its gradient norm, mean |g| and update ratio ||W_t - W_{t-1}|| / ||W_{t-1}|| (empty at step 0).
"""
import csv
import pathlib
import sys

import numpy as np
import torch

from trainguard.scenarios.exploding_gradient import make_regression


def main(healthy: bool) -> None:
    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_num_threads(1)
    X, y = make_regression()
    if healthy:
        y = (y - y.mean()) / y.std()
    Xt, yt = torch.tensor(X[:500]), torch.tensor(y[:500]).unsqueeze(1)
    model = torch.nn.Sequential(torch.nn.Linear(20, 25), torch.nn.ReLU(), torch.nn.Linear(25, 1))
    torch.nn.init.kaiming_uniform_(model[0].weight, nonlinearity="relu")
    torch.nn.init.zeros_(model[0].bias)
    names = {"0.weight": "fc1.weight", "0.bias": "fc1.bias", "2.weight": "fc2.weight", "2.bias": "fc2.bias"}
    params = [(names[n], p) for n, p in model.named_parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    header = ["step", "loss", "grad_norm"]
    for name, _ in params:
        header += [f"{name}:grad_norm", f"{name}:grad_abs_mean", f"{name}:update_ratio"]
    rows = []
    previous = None
    step = 0
    for _epoch in range(100 if healthy else 3):
        perm = torch.randperm(500)
        for i in range(0, 500, 32):
            idx = perm[i:i + 32]
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(Xt[idx]), yt[idx])
            loss.backward()
            total = torch.nn.utils.get_total_norm([p.grad for _, p in params]).item()
            row = [str(step), f"{loss.item():.5g}", f"{total:.5g}"]
            for j, (_, p) in enumerate(params):
                ratio = "" if previous is None else f"{((p - previous[j]).norm() / previous[j].norm()).item():.4g}"
                row += [f"{p.grad.norm().item():.5g}", f"{p.grad.abs().mean().item():.4g}", ratio]
            rows.append(row)
            previous = [p.detach().clone() for _, p in params]
            opt.step()
            step += 1
            if not torch.isfinite(loss):
                break
        if not torch.isfinite(loss):
            break
    out = pathlib.Path(__file__).parent / ("seed003_healthy.csv" if healthy else "seed003_exploding.csv")
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    print(f"{out}: {len(rows)} steps")


if __name__ == "__main__":
    main(healthy="--healthy" in sys.argv)
