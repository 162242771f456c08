"""The corpus case protocol: one module per case, each a re-created public bug (with its fixed twin) or a
healthy recipe that people really run. ``python -m benchmarks.diagnosis`` runs them all.

A case module defines ``CASE`` (what it is, where it comes from) and ``run(ctx) -> Outcome``:

    CASE = Case(
        name="so_12345_relu_bias_init",          # unique, the module's file name without .py
        kind="faulty",                           # "faulty" (a bug and its fix) or "healthy"
        cause="dead_relu",                       # a code of trainguard.core.causes.CAUSES; None for healthy
        framework="torch",                       # "torch", "keras_fit", "keras_loop", "hf", "lightning"
        source="https://stackoverflow.com/q/12345 (title ...)",   # read at its source; for healthy: the recipe
        symptom="loss stuck at 2.30 from step 0",                 # what the reporter saw
        fix="bias init 0 instead of -10 (accepted answer)",       # faulty only: what the fixed twin changes
    )

    def run(ctx: RunContext) -> Outcome:
        seeded(0)
        model, opt = ..., ...
        if ctx.fixed: ...                        # faulty cases: the accepted answer's fix
        guard = ctx.torch_guard(model, opt)      # a trainguard Guard, or None when ctx.policy is None
        for step, (x, y) in ...:
            ...; loss.backward()
            ctx.torch_step(guard, opt, loss, inputs=x, targets=y)   # guard.step(...) or opt.step()
            ctx.log_scalar(step, loss=loss.item())                   # the native log the doctor reads
        ctx.close(guard)
        return ctx.outcome(final_loss=..., model=model)

The benchmark calls ``run`` with ``policy`` None (unguarded), "observe" or "auto", ``fixed`` False/True, and an
``outdir`` where the run logs (``outdir/*.jsonl``, one per guard) and the native log go: a CSV of ``step,loss[,lr]`` for plain
loops (``ctx.log_scalar``), Keras ``CSVLogger`` (``ctx.keras_callbacks()``), HF ``trainer_state.json`` (the
Trainer's ``output_dir = ctx.outdir``), Lightning ``CSVLogger(save_dir=ctx.outdir)``.

Rules for every case: CPU, one thread (the benchmark sets it), seeds fixed, data made in the program (nothing
downloaded), at most ~20 s per run. ``final_loss`` is the same metric for the faulty run and its fixed twin
(usually the mean training loss of the last 10% of steps, or a held-out loss), so the benchmark can compare them.
"""
from __future__ import annotations

import csv
import hashlib
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Case", "RunContext", "Outcome", "seeded", "FRAMEWORKS", "KINDS"]

FRAMEWORKS = ("torch", "keras_fit", "keras_loop", "hf", "lightning")
KINDS = ("faulty", "healthy")


@dataclass(frozen=True)
class Case:
    name: str
    kind: str
    cause: str | None
    framework: str
    source: str
    symptom: str
    fix: str = ""

    def __post_init__(self) -> None:
        from trainguard.core.causes import CAUSES

        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind must be one of {KINDS}")
        if self.framework not in FRAMEWORKS:
            raise ValueError(f"{self.name}: framework must be one of {FRAMEWORKS}")
        if self.kind == "faulty" and (self.cause not in CAUSES or self.cause == "none"):
            raise ValueError(f"{self.name}: a faulty case needs a cause code from trainguard.core.causes")
        if self.kind == "healthy" and self.cause is not None:
            raise ValueError(f"{self.name}: a healthy case has no cause")


@dataclass
class Outcome:
    """What one run ended with. ``fingerprint`` hashes the final parameters (bitwise comparisons)."""

    final_loss: float
    fingerprint: str = ""
    steps: int = 0
    stopped: str = ""  # set when the guard stopped training (TrainingStopped's message)
    extra: dict[str, Any] = field(default_factory=dict)


def seeded(seed: int = 0) -> None:
    """Seeds Python, numpy and whichever of torch/keras is importable."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass


def fingerprint_arrays(arrays: list[Any]) -> str:
    """sha256 of the arrays' bytes, in order (numpy arrays, or anything ``np.asarray`` takes)."""
    import numpy as np

    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(np.asarray(a)).tobytes())
    return h.hexdigest()[:16]


@dataclass
class RunContext:
    """How the benchmark asks a case to run, and the helpers that wire trainguard in or leave it out."""

    outdir: Path
    policy: str | None = None  # None: unguarded; "observe"; "auto"; "safe"
    fixed: bool = False  # faulty cases: run the fixed twin
    _scalars: Any = None

    def __post_init__(self) -> None:
        self.outdir = Path(self.outdir)
        self.outdir.mkdir(parents=True, exist_ok=True)

    @property
    def runlog(self) -> Path:
        return self.runlog_named("run")

    def runlog_named(self, name: str) -> Path:
        """A run log per guard: a program with two optimizers (a GAN) guards each into its own log."""
        return self.outdir / f"{name}.jsonl"

    @property
    def guarded(self) -> bool:
        return self.policy is not None

    # -- plain PyTorch loops ------------------------------------------------------------------------------
    def torch_guard(self, model: Any, optimizer: Any, name: str = "run", **kwargs: Any) -> Any:
        """A ``trainguard.Guard`` logging to ``outdir/<name>.jsonl``, or None when unguarded."""
        if self.policy is None:
            return None
        import trainguard

        return trainguard.Guard(model, optimizer, policy=self.policy, log=str(self.runlog_named(name)), **kwargs)

    @staticmethod
    def torch_step(guard: Any, optimizer: Any, loss: Any, **kwargs: Any) -> None:
        """``guard.step(loss, **kwargs)`` when guarded, else ``optimizer.step()``. Raises TrainingStopped."""
        if guard is None:
            optimizer.step()
        else:
            guard.step(loss, **kwargs)

    @staticmethod
    def close(guard: Any) -> None:
        if guard is not None:
            guard.close()

    def log_scalar(self, step: int, **values: float) -> None:
        """One row of the native CSV log (``outdir/metrics.csv``: step, then the given columns)."""
        path = self.outdir / "metrics.csv"
        if self._scalars is None:
            self._scalars = open(path, "w", newline="", encoding="utf-8")
            self._columns = ["step", *values]
            csv.writer(self._scalars).writerow(self._columns)
        row = [step, *(values.get(c, "") for c in self._columns[1:])]
        csv.writer(self._scalars).writerow(row)
        self._scalars.flush()

    # -- Keras -----------------------------------------------------------------------------------------------
    def keras_callbacks(self, **kwargs: Any) -> list[Any]:
        """``[trainguard.keras.Guard, CSVLogger(outdir/training.csv)]`` (the CSVLogger alone when unguarded)."""
        import keras

        callbacks: list[Any] = [keras.callbacks.CSVLogger(str(self.outdir / "training.csv"))]
        if self.policy is not None:
            import trainguard.keras

            callbacks.insert(0, trainguard.keras.Guard(policy=self.policy, log=str(self.runlog), **kwargs))
        return callbacks

    def keras_optimizer(self, optimizer: Any, model: Any) -> Any:
        """A Keras custom loop's optimizer: wrapped in ``GuardedOptimizer`` when guarded."""
        if self.policy is None:
            return optimizer
        import trainguard.keras

        return trainguard.keras.GuardedOptimizer(optimizer, policy=self.policy, log=str(self.runlog), model=model)

    # -- HF Trainer, Lightning -------------------------------------------------------------------------------
    def hf_callbacks(self, **kwargs: Any) -> list[Any]:
        if self.policy is None:
            return []
        import trainguard.hf

        return [trainguard.hf.Guard(policy=self.policy, log=str(self.runlog), **kwargs)]

    def lightning_callbacks(self, **kwargs: Any) -> list[Any]:
        if self.policy is None:
            return []
        import trainguard.lightning

        return [trainguard.lightning.Guard(policy=self.policy, log=str(self.runlog), **kwargs)]

    # -- the result --------------------------------------------------------------------------------------------
    def outcome(self, final_loss: float, model: Any = None, steps: int = 0, **extra: Any) -> Outcome:
        """Packs the result; ``model`` (torch module or Keras model) is fingerprinted for bitwise checks."""
        if self._scalars is not None:
            self._scalars.close()
            self._scalars = None
        return Outcome(final_loss=float(final_loss) if final_loss is not None else math.nan,
                       fingerprint=_fingerprint_model(model) if model is not None else "", steps=steps, extra=extra)


def _fingerprint_model(model: Any) -> str:
    if hasattr(model, "state_dict") and callable(model.state_dict):  # torch (also a LightningModule)
        return fingerprint_arrays([t.detach().cpu().float().numpy() for t in model.state_dict().values()
                                   if hasattr(t, "detach")])
    return fingerprint_arrays([w for w in model.get_weights()])  # Keras
