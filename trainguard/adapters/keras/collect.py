"""Keras tensors -> plain numbers: the arithmetic of the Keras guard, apart from its bookkeeping.

Everything here runs on the host (numpy) and only on the steps the preset samples, except
:func:`step_numbers`, which reads the few scalars every step needs from a :class:`StepRecord`.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import keras
import numpy as np

from trainguard.adapters.keras import private
from trainguard.core.stats import BufferStats, LayerStats, TensorSummary
from trainguard.diff.fingerprint import fingerprint_arrays

# sqrt(v)'s median is taken over a strided sample of at most about this many entries, as the torch guard does:
# an exact median sorts the whole tensor.
MEDIAN_SAMPLE = 4096

__all__ = ["to_numpy", "step_numbers", "weight_arrays", "layer_stats", "adam_second_moments", "data_summary",
           "first_leaf", "learning_rate"]


def to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, (np.ndarray, np.generic, bool, int, float)):  # already on the host
        return np.asarray(x)
    if isinstance(x, keras.Variable):
        x = x.value
    if callable(getattr(x, "detach", None)) and callable(getattr(x, "numpy", None)):
        # A torch tensor: read it directly (Keras' converter goes through np.array, which warns on numpy 2).
        x = x.detach().cpu()
        return (x.float() if x.dtype.is_floating_point and x.element_size() < 4 else x).numpy()
    if keras.backend.backend() == "tensorflow" and callable(getattr(x, "numpy", None)):
        return np.asarray(x.numpy())  # an eager tensor or variable: directly, at half the cost of the converter
    return np.asarray(keras.ops.convert_to_numpy(x))


def step_numbers(loss: Any, grad_norms: Any) -> tuple[float | None, np.ndarray, float]:
    """``(loss, per-variable raw gradient norms, global norm)`` of one update."""
    norms = to_numpy(grad_norms).astype(np.float64).reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(np.sqrt(np.sum(np.square(norms)))) if norms.size else 0.0
    value = None if loss is None else float(to_numpy(loss).reshape(-1)[0])
    return value, norms, total


def weight_arrays(variables: Sequence[Any], read: Callable[[Any], np.ndarray] = to_numpy) -> list[np.ndarray]:
    """Host copies of the variables' values (a snapshot for the update ratio, or for a rollback)."""
    return [np.array(read(v), copy=True) for v in variables]


def _norm(a: np.ndarray) -> float:
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.sqrt(np.sum(np.square(a, dtype=np.float64))))


def layer_stats(names: Sequence[str], grad_norms: np.ndarray, weights: Sequence[np.ndarray],
                before: Sequence[np.ndarray] | None, grads: Sequence[Any] | None,
                second_moments: dict[int, tuple[np.ndarray, float, np.ndarray | None]] | None,
                measured: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> tuple[LayerStats, ...]:
    """Per-variable statistics of one sampled step, in the optimizer's (forward) order.

    ``before``: the weights before this step's update (update ratio ||W_t - W_{t-1}|| / ||W_{t-1}||).
    ``grads``: this step's raw gradients (mean |g|, fraction of exact zeros, Adam update RMS), when kept.
    ``second_moments``: index -> (Adam's bias-corrected v, epsilon, where the stored v is held at full precision).
    ``measured``: from a compiled step, which keeps no raw gradients, those three per-tensor statistics measured
    in the graph (NaN where not measured).
    """
    out = []
    for i, name in enumerate(names):
        w = weights[i]
        g = None if grads is None or grads[i] is None else to_numpy(grads[i]).astype(np.float32)
        ratio = None
        if before is not None:
            base = _norm(before[i])
            if base > 0:
                ratio = _norm(w - before[i]) / base
        grad_abs_mean = zero_fraction = None
        if g is not None and g.size:
            grad_abs_mean = float(np.mean(np.abs(g)))
            zero_fraction = float(np.mean(g == 0))
        adam_rms = sqrt_v_min = sqrt_v_median = lag_rms = None
        if second_moments is not None and i in second_moments:
            v_hat, eps, held = second_moments[i]
            sqrt_v = np.sqrt(np.maximum(v_hat, 0.0))
            sample = sqrt_v.reshape(-1)[::max(1, sqrt_v.size // MEDIAN_SAMPLE)]
            sqrt_v_min, sqrt_v_median = float(np.min(sqrt_v)), float(np.median(sample))
            if g is not None:
                # Wortsman et al. 2023 (StableAdamW): RMS of g / max(sqrt(v), eps).
                squares = np.square(g / np.maximum(sqrt_v, eps))
                adam_rms = float(np.sqrt(np.mean(squares)))
                # over the entries whose v the dtype holds, or without a gradient (LayerStats.adam_lag_rms)
                held = None if held is None else held | (g == 0)
                lag_rms = adam_rms if held is None or held.all() else float(
                    np.sqrt(np.sum(squares[held]) / max(np.sum(held), 1)))
        if measured is not None:
            grad_abs_mean, zero_fraction, adam_rms = (_finite_or_none(a[i]) for a in measured)
        out.append(LayerStats(
            name=name,
            grad_norm=float(grad_norms[i]) if i < len(grad_norms) else None,
            weight_norm=_norm(w),
            update_ratio=ratio,
            grad_abs_mean=grad_abs_mean,
            zero_grad_fraction=zero_fraction,
            adam_update_rms=adam_rms,
            adam_sqrt_v_min=sqrt_v_min,
            adam_sqrt_v_median=sqrt_v_median,
            adam_lag_rms=lag_rms,
        ))
    return tuple(out)


def _finite_or_none(value: Any) -> float | None:
    return float(value) if np.isfinite(value) else None


def adam_second_moments(optimizer: Any, read: Callable[[Any], np.ndarray] = to_numpy
                        ) -> dict[int, tuple[np.ndarray, float, np.ndarray | None]] | None:
    """Adam-family second moments, bias-corrected, per trainable-variable index, with where the stored moment is at
    least its dtype's smallest normal number (held at full precision: not so in float16 below 6.1e-5; None, every
    entry, for the dtypes with float32's range: a v below it there needs |g| < 1e-17); None for other optimizers."""
    velocities = private.velocities(optimizer)
    beta_2 = getattr(optimizer, "beta_2", None)
    if not velocities or beta_2 is None:
        return None
    steps = float(read(private.iterations_variable(optimizer)))
    correction = 1.0 - float(beta_2) ** max(steps, 1.0)
    eps = float(getattr(optimizer, "epsilon", 1e-7) or 1e-7)
    out = {}
    for i, variable in enumerate(velocities):
        if variable is not None:
            v = read(variable)  # float32 on the host whatever the variable's dtype: the dtype is the variable's
            half = keras.backend.standardize_dtype(variable.dtype) == "float16"
            out[i] = (v / np.float32(correction), eps, v >= np.finfo(np.float16).tiny if half else None)
    return out


def learning_rate(optimizer: Any, read: Callable[[Any], np.ndarray] = to_numpy) -> float:
    """The optimizer's current learning rate (a float, a variable or a schedule of its iterations)."""
    lr = private.learning_rate_slot(optimizer)
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        return float(to_numpy(lr(read(private.iterations_variable(optimizer)))))
    if isinstance(lr, keras.Variable):
        return float(read(lr))
    return float(to_numpy(lr() if callable(lr) else lr))


def first_leaf(structure: Any) -> Any:
    """The first array of a nested structure (a model's inputs may be a dict or a list)."""
    leaves = keras.tree.flatten(structure) if structure is not None else []
    return leaves[0] if leaves else None


def batch_fingerprint(inputs: Any, targets: Any) -> str | None:
    """The forensic hash of a batch (inputs, then targets), the one ``trainguard diff`` compares."""
    leaves = [leaf for part in (inputs, targets) if part is not None for leaf in keras.tree.flatten(part)]
    return fingerprint_arrays([keras.ops.convert_to_numpy(leaf) for leaf in leaves]) if leaves else None


def moving_statistics(model: Any) -> tuple[BufferStats, ...]:
    """Mean and L2 norm of every normalisation layer's ``moving_mean`` / ``moving_variance``, named by variable
    path. They move in the forward pass only in training mode, so ``trainguard diff`` reads a layer that ran in
    inference mode from them."""
    out = []
    for variable in model.non_trainable_variables:
        if variable.path.rsplit("/", 1)[-1] in ("moving_mean", "moving_variance"):
            values = keras.ops.convert_to_numpy(variable.value).astype(np.float64).reshape(-1)
            out.append(BufferStats(variable.path, float(values.mean()), float(np.linalg.norm(values))))
    return tuple(out)


def data_summary(x: Any) -> TensorSummary | None:
    """``[mean, std, abs max, min, max]`` of a floating-point batch (population std), as the torch adapter takes it:
    a NaN or Inf in the batch shows in the summary (it is not dropped), and integer data (class labels) has none."""
    if x is None:
        return None
    a = to_numpy(x)
    if a.size == 0 or not np.issubdtype(a.dtype, np.floating):
        return None
    a = a.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        return TensorSummary(float(a.mean()), float(a.std()), float(np.abs(a).max()), float(a.min()), float(a.max()))
