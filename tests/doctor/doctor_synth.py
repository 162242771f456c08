"""Generators of realistic synthetic training logs, healthy and sick, and writers for every format the doctor
reads. The doctor's thresholds are tuned on these (and on the real tiny torch runs in test_real_runs.py).

A healthy run: the loss decays to a floor with multiplicative minibatch noise (log-normal, or heavy-tailed),
under a warm-up then cosine or step LR schedule, gradient norms that fall then wander, an eval loss every few
hundred steps that flattens. The sick runs add one pathology each to such a run.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

__all__ = ["healthy", "SICK", "sick", "write_csv", "write_jsonl", "write_trainer_state", "write_keras_csv",
           "write_lightning_csv", "write_tensorboard"]


def healthy(seed: int, steps: int = 3000, *, noise: float | None = None, schedule: str | None = None,
            log_every: int = 1, steps_per_epoch: int | None = None, heavy_tail: bool | None = None) -> dict:
    rng = np.random.default_rng(seed)
    noise = float(rng.uniform(0.02, 0.25)) if noise is None else noise
    schedule = schedule or str(rng.choice(["cosine", "step", "constant", "restarts", "linear"]))
    heavy_tail = bool(rng.random() < 0.3) if heavy_tail is None else heavy_tail
    spe = steps_per_epoch or int(rng.integers(50, 400))
    t = np.arange(steps, dtype=np.float64)
    peak_lr = 10 ** rng.uniform(-4, -1)
    warmup = int(rng.integers(0, steps // 10 + 1))
    lr = _schedule(schedule, t, steps, peak_lr, warmup)
    start, floor = rng.uniform(1.0, 8.0), rng.uniform(0.02, 0.8)
    speed = rng.uniform(3, 10) / steps
    # Progress follows the integrated LR, so decays and restarts shape the loss as they do in practice.
    progress = np.cumsum(lr / peak_lr) * speed
    mean = floor + (start - floor) * np.exp(-progress)
    if schedule == "step":
        mean = mean * (1 - 0.15 * (lr < 0.5 * peak_lr) - 0.1 * (lr < 0.05 * peak_lr))
    shocks = rng.standard_t(5, steps) * noise * 0.7 if heavy_tail else rng.normal(0, noise, steps)
    loss = mean * np.exp(shocks)
    grad = (0.5 + 3 * np.exp(-progress * 2)) * np.exp(rng.normal(0, 0.2, steps)) * rng.uniform(0.3, 3)
    eval_every = max(log_every, int(rng.integers(100, 500)))
    eval_step = t[eval_every - 1::eval_every]
    eval_mean = (floor * rng.uniform(1.05, 1.3) + (start - floor) * np.exp(-progress[eval_step.astype(int)]))
    eval_loss = eval_mean * np.exp(rng.normal(0, 0.01, len(eval_step)))
    run = {"step": t, "loss": loss, "lr": lr, "grad_norm": grad, "batch_size": np.full(steps, 32.0),
           "epoch": np.floor(t / spe), "eval_step": eval_step, "eval_loss": eval_loss, "steps_per_epoch": spe}
    return _subsample(run, log_every)


def _schedule(kind: str, t: np.ndarray, steps: int, peak: float, warmup: int) -> np.ndarray:
    ramp = np.minimum(1.0, (t + 1) / max(1, warmup))
    if kind == "cosine":
        base = 0.5 * (1 + np.cos(np.pi * t / steps))
    elif kind == "step":
        base = 0.1 ** np.floor(t / (steps / 3))
    elif kind == "restarts":
        cycle = steps / 3
        base = 0.5 * (1 + np.cos(np.pi * (t % cycle) / cycle))
    elif kind == "linear":
        base = 1 - t / steps
    else:
        base = np.ones_like(t)
    return peak * ramp * np.maximum(base, 0.01)


def _subsample(run: dict, every: int) -> dict:
    if every <= 1:
        return run
    keep = slice(every - 1, None, every)
    for key in ("step", "loss", "lr", "grad_norm", "batch_size", "epoch"):
        run[key] = run[key][keep]
    return run


def sick(kind: str, seed: int, steps: int = 3000) -> dict:
    """A healthy run with one pathology; ``run['expect']`` is (code, cause) the doctor should report."""
    rng = np.random.default_rng(seed + 1000)
    run = healthy(seed, steps, noise=float(rng.uniform(0.02, 0.12)), heavy_tail=False)
    loss, lr, grad, t = run["loss"], run["lr"], run["grad_norm"], run["step"]
    n = len(t)
    if kind == "periodic_spike":
        # At least six epochs, or there is no pattern to see.
        spe = run["steps_per_epoch"] = min(run["steps_per_epoch"], n // 6)
        run["epoch"] = np.floor(t / spe)
        ends = np.arange(spe - 1, n, spe).astype(int)
        loss[ends] *= rng.uniform(2.5, 6.0, len(ends))
        run["batch_size"][ends] = float(rng.integers(1, 8))
        run["expect"] = ("periodic_spike", "batch_size_dependent_loss")
    elif kind == "loss_spike":
        # Bad batches that undo the training each time (above the first loss): repeated, so a warning; one
        # isolated spike the loss recovers from is information (docs/severity.md).
        for at in np.sort(rng.choice(np.arange(n // 3, 2 * n // 3), 3, replace=False)):
            loss[at] = max(loss[at] * rng.uniform(5, 20), loss[0] * rng.uniform(1.2, 2))
        run["expect"] = ("loss_spike", "bad_batch")
    elif kind == "lr_too_high":
        onset = int(rng.integers(n // 3, n // 2))
        lr[:] = np.linspace(lr[0] * 0.1, lr[0] * 30, n)
        growth = np.exp(np.maximum(0, t - onset) * rng.uniform(4, 10) / n)
        loss *= growth
        grad *= growth ** 1.5
        run["expect"] = ("divergence", "lr_too_high")
    elif kind == "adam_epsilon":
        onset = int(rng.integers(int(0.75 * n), int(0.85 * n)))
        grad *= np.exp(-t / n * 6)
        lr[:] = lr.max()
        blow = np.exp(np.clip((t - onset) / (0.02 * n), 0, None))
        loss *= np.minimum(blow, 50)
        grad[onset:] *= np.minimum(blow[onset:], 1e3)
        run["expect"] = ("divergence", "adam_epsilon")
    elif kind == "non_finite":
        at = int(rng.integers(n // 2, n - 10))
        loss[at - 20:at] *= np.exp(np.linspace(0, 8, 20))
        grad[at - 20:at] *= np.exp(np.linspace(0, 10, 20))
        loss[at:] = np.nan
        run["expect"] = ("non_finite", "exploding_gradient")
    elif kind == "oscillation":
        onset = n // 2
        lr[onset:] = lr[onset] * np.linspace(1, 5, n - onset)
        sign = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
        loss[onset:] *= np.exp(0.4 * sign[onset:])
        run["expect"] = ("oscillation", "lr_too_high")
    elif kind == "plateau":
        level = float(np.log(10))
        run["loss"] = level * np.exp(rng.normal(0, 0.005, n))
        run["grad_norm"] = 10 ** rng.uniform(-7, -5) * np.exp(rng.normal(0, 0.1, n))
        run["eval_loss"] = np.full(len(run["eval_step"]), level)
        run["expect"] = ("plateau", "vanishing_gradient")
    elif kind == "overfitting":
        ev, es = run["eval_loss"], run["eval_step"]
        turn = es[len(es) // 3]
        ev += ev[len(es) // 3] * rng.uniform(0.4, 1.2) * np.maximum(0, es - turn) / (es[-1] - turn)
        run["expect"] = ("overfitting", "overfitting")
    else:
        raise ValueError(kind)
    return run


SICK = ("periodic_spike", "loss_spike", "lr_too_high", "adam_epsilon", "non_finite", "oscillation", "plateau",
        "overfitting")


def _rows(run: dict, with_eval: bool = True) -> list[dict]:
    rows = [{"step": int(s), "loss": float(l), "lr": float(r), "grad_norm": float(g), "batch_size": int(b),
             "epoch": int(e)}
            for s, l, r, g, b, e in zip(run["step"], run["loss"], run["lr"], run["grad_norm"], run["batch_size"],
                                        run["epoch"])]
    if with_eval:
        by_step = {r["step"]: r for r in rows}
        for s, v in zip(run["eval_step"], run["eval_loss"]):
            if int(s) in by_step:
                by_step[int(s)]["eval_loss"] = float(v)
    return rows


def write_csv(run: dict, path: Path) -> Path:
    rows = _rows(run)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "epoch", "loss", "lr", "grad_norm", "batch_size", "eval_loss"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl(run: dict, path: Path) -> Path:
    with open(path, "w") as f:
        for row in _rows(run):
            f.write(json.dumps({k: (str(v) if isinstance(v, float) and not np.isfinite(v) else v)
                                for k, v in row.items()}) + "\n")
    return path


def write_trainer_state(run: dict, path: Path) -> Path:
    history = []
    spe = run["steps_per_epoch"]
    for row in _rows(run, with_eval=False):
        history.append({"epoch": round(row["step"] / spe, 4), "grad_norm": row["grad_norm"],
                        "learning_rate": row["lr"], "loss": row["loss"], "step": row["step"]})
    for s, v in zip(run["eval_step"], run["eval_loss"]):
        history.append({"epoch": round(float(s) / spe, 4), "eval_loss": float(v), "eval_runtime": 1.0,
                        "step": int(s)})
    history.sort(key=lambda r: r["step"])
    history.append({"epoch": history[-1]["epoch"], "step": int(run["step"][-1]), "train_loss": 0.5,
                    "train_runtime": 12.3, "total_flos": 1e12})
    path.write_text(json.dumps({"global_step": int(run["step"][-1]), "log_history": history}, indent=2))
    return path


def write_keras_csv(run: dict, path: Path) -> Path:
    """Keras CSVLogger: one row per epoch with the epoch mean loss and the validation loss."""
    epochs = run["epoch"].astype(int)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "learning_rate", "loss", "val_loss"])
        for e in np.unique(epochs):
            sel = epochs == e
            val = np.interp(run["step"][sel][-1], run["eval_step"], run["eval_loss"])
            writer.writerow([int(e), float(run["lr"][sel][-1]), float(np.mean(run["loss"][sel])), float(val)])
    return path


def write_lightning_csv(run: dict, path: Path) -> Path:
    """Lightning CSVLogger metrics.csv: train rows with empty validation cells and validation rows with empty
    training cells, sharing the step column."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "lr-Adam", "step", "train_loss_step", "val_loss"])
        evals = dict(zip(run["eval_step"].astype(int).tolist(), run["eval_loss"].tolist()))
        for s, l, r, e in zip(run["step"].astype(int), run["loss"], run["lr"], run["epoch"].astype(int)):
            writer.writerow([e, float(r), s, float(l), ""])
            if s in evals:
                writer.writerow([e, "", s, "", evals[s]])
    return path


def write_tensorboard(run: dict, directory: Path) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(directory))
    for s, l, r, g in zip(run["step"].astype(int), run["loss"], run["lr"], run["grad_norm"]):
        writer.add_scalar("train/loss", float(l), int(s))
        writer.add_scalar("train/learning_rate", float(r), int(s))
        writer.add_scalar("train/grad_norm", float(g), int(s))
    for s, v in zip(run["eval_step"].astype(int), run["eval_loss"]):
        writer.add_scalar("eval/loss", float(v), int(s))
    writer.close()
    return next(directory.glob("*tfevents*"))
