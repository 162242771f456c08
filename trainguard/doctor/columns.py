"""Which column is which: automatic detection by name, user overrides, and the table -> series step.

Names are compared lower-cased with ``-``, spaces and dots read as ``_``, so ``lr-Adam`` (Lightning's
LearningRateMonitor) reads as ``lr_adam``. The first alias in each list that the file has wins.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from trainguard.core.detectors.overfitting import metric_direction
from trainguard.doctor.series import MetricTable, ReadError, RunSeries

__all__ = ["ROLES", "ALIASES", "normalise", "detect_columns", "build_series"]

ROLES = ("step", "loss", "lr", "grad_norm", "batch_size", "eval_loss", "epoch")

ALIASES: dict[str, tuple[str, ...]] = {
    "step": ("step", "global_step", "trainer/global_step", "train/global_step", "train/step", "_step",
             "iteration", "iter", "it", "steps", "batch"),
    "loss": ("loss", "train_loss", "training_loss", "train/loss", "loss/train", "loss/training",
             "train_loss_step", "loss_step", "train/loss_step", "batch_loss", "running_loss", "avg_loss",
             "train_loss_epoch", "loss_epoch", "epoch_loss"),
    "lr": ("lr", "learning_rate", "train/learning_rate", "train/lr", "learningrate", "epoch_learning_rate",
           "epoch_lr"),
    "grad_norm": ("grad_norm", "gradient_norm", "train/grad_norm", "global_grad_norm", "grad_norm_total",
                  "grad_2_0_norm_total", "gradnorm"),
    "batch_size": ("batch_size", "train/batch_size", "batchsize", "bs"),
    "eval_loss": ("eval_loss", "val_loss", "validation_loss", "eval/loss", "val/loss", "valid_loss",
                  "validation/loss", "valid/loss", "loss/val", "loss/validation", "loss/valid", "loss/eval",
                  "val_loss_epoch", "val/loss_epoch", "eval/val_loss"),
    "epoch": ("epoch", "train/epoch", "epochs"),
}
# Evaluation columns (Keras' val_accuracy, the HF Trainer's eval_f1, Lightning's val/acc).
_EVAL_PREFIXES = ("val_", "val/", "eval_", "eval/", "valid_", "valid/", "validation_", "validation/")
# Lightning names its LR column after the optimiser (lr-Adam, lr-SGD-1); others add the parameter group.
_LR_PREFIXES = ("lr_", "lr/", "learning_rate/", "learning_rate_")
# Weights & Biases CSV exports name columns "<run> - <metric>", with "__MIN"/"__MAX" companions.
_WANDB_SEPARATOR = " - "


def normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_").replace(".", "_")


def detect_columns(names: list[str], overrides: dict[str, str | None] | None = None) -> dict[str, str]:
    """Maps each role to a column name of ``names``. An override must name an existing column."""
    overrides = {k: v for k, v in (overrides or {}).items() if v}
    by_norm: dict[str, str] = {}
    for name in names:
        by_norm.setdefault(normalise(name), name)
    for name in names:
        if _WANDB_SEPARATOR in name and not name.endswith(("__MIN", "__MAX")):
            by_norm.setdefault(normalise(name.rsplit(_WANDB_SEPARATOR, 1)[1]), name)
    mapping: dict[str, str] = {}
    for role, wanted in overrides.items():
        if wanted in names:
            mapping[role] = wanted
        elif normalise(wanted) in by_norm:
            mapping[role] = by_norm[normalise(wanted)]
        else:
            raise ReadError(f"no column {wanted!r} for --{role.replace('_', '-')}-col; the columns are: "
                            f"{', '.join(names[:20])}")
    taken = set(mapping.values())
    for role in ROLES:
        if role in mapping:
            continue
        for alias in ALIASES[role]:
            if alias in by_norm and by_norm[alias] not in taken:
                mapping[role] = by_norm[alias]
                break
        else:
            if role == "lr":
                prefixed = [n for norm, n in by_norm.items() if norm.startswith(_LR_PREFIXES) and n not in taken]
                if prefixed:
                    mapping[role] = prefixed[0]
        if role in mapping:
            taken.add(mapping[role])
    return mapping


def build_series(table: MetricTable, path: Path, fmt: str,
                 overrides: dict[str, str | None] | None = None) -> RunSeries:
    """Training rows (those with a loss) ordered by step, evaluation rows apart, problems listed."""
    names = list(table.values)
    mapping = detect_columns(names, overrides)
    problems = list(table.problems)
    other_losses: tuple[str, ...] = ()
    if "loss" not in mapping:
        others = [n for n in names if _named_a_training_loss(n) and n not in mapping.values()]
        if others:
            # Two optimizers (a GAN's loss_d and loss_g) log one loss each: read the first, and say so.
            mapping["loss"], other_losses = others[0], tuple(others[1:])
            if len(others) > 1:
                problems.append(f"{len(others)} loss columns ({', '.join(others[:6])}): this report reads "
                                f"{others[0]!r}; run again with --loss-col {others[1]} for the next")
    if "loss" not in mapping:
        raise ReadError(f"no loss column (looked for {', '.join(ALIASES['loss'][:4])}, ...; columns are: "
                        f"{', '.join(names[:20]) or 'none'}); name it with --loss-col")
    step_name = mapping.get("step") or mapping.get("epoch")
    if step_name is not None:
        step_all, step_ok = table.values[step_name], table.present[step_name] & np.isfinite(table.values[step_name])
    else:
        step_all, step_ok = np.arange(table.rows, dtype=np.float64), np.ones(table.rows, dtype=bool)
    columns = dict(mapping)
    columns.setdefault("step", step_name or "(row number)")

    train_rows = table.present[mapping["loss"]]
    no_step = train_rows & ~step_ok
    if no_step.any():
        problems.append(f"{int(no_step.sum())} row(s) with a loss but no readable {step_name!r}: skipped")
    train_rows = np.flatnonzero(train_rows & step_ok)
    if len(train_rows) == 0:
        raise ReadError(f"no row has a readable {mapping['loss']!r} value")
    train_rows = _last_write_wins(step_all, train_rows, problems, "")

    present: dict[str, np.ndarray] = {}

    def column(role: str, rows: np.ndarray) -> np.ndarray | None:
        if role not in mapping:
            return None
        values = table.values[mapping[role]][rows].astype(np.float64, copy=True)
        present[role] = table.present[mapping[role]][rows]
        values[~present[role]] = np.nan
        return values

    series = RunSeries(
        path=path, format=fmt, step=step_all[train_rows].astype(np.float64),
        loss=table.values[mapping["loss"]][train_rows].astype(np.float64),
        lr=column("lr", train_rows), grad_norm=column("grad_norm", train_rows),
        batch_size=column("batch_size", train_rows), epoch=column("epoch", train_rows),
        columns=columns, problems=problems, present=present, other_losses=other_losses,
    )
    if "eval_loss" in mapping:
        eval_rows = np.flatnonzero(table.present[mapping["eval_loss"]] & step_ok)
        if len(eval_rows):
            eval_rows = _last_write_wins(step_all, eval_rows, problems, "evaluation ")
            series.eval_step = step_all[eval_rows].astype(np.float64)
            series.eval_loss = table.values[mapping["eval_loss"]][eval_rows].astype(np.float64)
            series.eval_metrics = _eval_metrics(table, mapping["eval_loss"], eval_rows)
    return series


def _eval_metrics(table: MetricTable, eval_loss: str, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The evaluation columns besides the loss whose direction their name tells (the overfitting analysis
    weighs the held-out harm by them), NaN where a row lacks the value."""
    out = {}
    for name in table.values:
        norm = normalise(name)
        prefix = next((p for p in _EVAL_PREFIXES if norm.startswith(p)), None)
        if name == eval_loss or prefix is None or metric_direction(norm[len(prefix):]) is None:
            continue
        values = table.values[name][rows].astype(np.float64, copy=True)
        values[~table.present[name][rows]] = np.nan
        if np.isfinite(values).any():
            out[norm[len(prefix):]] = values
    return out


def _named_a_training_loss(name: str) -> bool:
    """``loss_d``, ``g_loss``, ``loss/generator``: "loss" is one of the name's words, and none of them says
    evaluation."""
    words = set(normalise(name).replace("/", "_").split("_"))
    return "loss" in words and not words & {"val", "eval", "valid", "validation", "test"}


def _last_write_wins(steps: np.ndarray, rows: np.ndarray, problems: list[str], kind: str) -> np.ndarray:
    """Keeps a row only if every later row has a larger step: a repeated step keeps its last row and a step
    that goes back (a run resumed from a checkpoint) supersedes the rows it rewrites, as TensorBoard does."""
    s = steps[rows]
    if len(s) < 2 or bool(np.all(np.diff(s) > 0)):
        return rows
    later_min = np.minimum.accumulate(s[::-1])[::-1]
    keep = np.ones(len(s), dtype=bool)
    keep[:-1] = s[:-1] < later_min[1:]
    diffs = np.diff(s)
    repeats, backs = int((diffs == 0).sum()), np.flatnonzero(diffs < 0)
    if repeats:
        problems.append(f"{repeats} {kind}row(s) repeat the previous step; kept the last of each")
    if len(backs):
        first = int(backs[0])
        problems.append(f"{kind}steps go back {len(backs)} time(s) (first from {_fmt(s[first])} to "
                        f"{_fmt(s[first + 1])}: a resumed run?); kept the later rows, dropped "
                        f"{int((~keep).sum()) - repeats} superseded row(s)")
    return rows[keep]


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"
