"""Tensors -> statistics: the arithmetic of the torch guard, apart from its bookkeeping.

Every function here returns tensors on the device of its inputs and never reads a value back to the host, so
a guard can queue the results and fetch them all at once (one sync every ``fetch_every`` steps on GPU).
Norms are float32 whatever the tensors' dtype, so fp16 gradients cannot overflow their own norm.
"""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = [
    "tensor_norms",
    "step_vector",
    "given_norm_vector",
    "snapshot",
    "update_norms",
    "grad_sparsity",
    "adam_moments",
    "data_summary",
    "MEDIAN_SAMPLE",
]

# sqrt(v)'s median is taken over a strided sample of at most this many entries: an exact median sorts the
# tensor (4 ms for 400k floats on one CPU core), which would break the guard's overhead budget.
MEDIAN_SAMPLE = 4096


def _norm_list(tensors: Sequence[torch.Tensor], ord: float, device: torch.device,
               plain: bool | None = None) -> list[torch.Tensor]:
    """Per-tensor norms in one fused pass (as ``torch.nn.utils.get_total_norm`` does), float32, on ``device``.
    ``plain``: the caller knows every tensor is float32 on ``device`` (None: check)."""
    if plain is None:
        plain = all(t.dtype == torch.float32 and t.device == device for t in tensors)
    if plain:
        return list(torch._foreach_norm(tensors, ord))  # the dtype argument would cost ~25% here for nothing
    try:
        norms = torch._foreach_norm(tensors, ord, dtype=torch.float32)
    except (TypeError, RuntimeError):  # torch < 2.4 has no dtype argument
        norms = [torch.linalg.vector_norm(t, ord, dtype=torch.float32) for t in tensors]
    return [n.to(device) for n in norms]


def tensor_norms(tensors: Sequence[torch.Tensor], ord: float = 2.0) -> torch.Tensor:
    """Per-tensor ``ord``-norms as one float32 vector on the first tensor's device."""
    return torch.stack(_norm_list(tensors, ord, tensors[0].device))


def step_vector(loss: torch.Tensor, grads: Sequence[torch.Tensor], device: torch.device,
                plain: bool | None = None) -> torch.Tensor:
    """``[loss, ||g_1||, ..., ||g_n||]`` as one float32 vector on ``device``.

    The global norm and the finiteness flags follow from it on the host (sqrt of the sum of squares; a tensor
    with a NaN or Inf has a non-finite norm), so the every-step cost is one fused norm and one stack.
    ``plain`` as for the norms: every gradient is float32 on ``device``.
    """
    loss = loss.detach()
    if loss.device != device:
        loss = loss.to(device)
    if loss.dim():
        loss = loss.reshape(()) if loss.numel() == 1 else loss.float().mean()  # a per-sample loss: its mean
    if not grads:
        return loss.float().reshape(1)
    vector = torch.stack([loss, *_norm_list(grads, 2.0, device, plain)])  # stack promotes a low-precision loss
    return vector if vector.dtype == torch.float32 else vector.float()


def given_norm_vector(loss: torch.Tensor, grad_norm: torch.Tensor | float, device: torch.device) -> torch.Tensor:
    """``[loss, grad_norm]`` as one float32 vector on ``device``, from a global norm the user already computed
    (``clip_grad_norm_`` returns it): no pass over the gradients."""
    loss = loss.detach()
    if loss.dim():
        loss = loss.reshape(()) if loss.numel() == 1 else loss.float().mean()
    norm = torch.as_tensor(grad_norm).detach()
    return torch.stack([loss.to(device).float(), norm.to(device).float().reshape(())])


def snapshot(weights: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """A copy of the weights before the update (taken on sampled steps only)."""
    return [w.clone() for w in weights]


def update_norms(weights: Sequence[torch.Tensor], before: list[torch.Tensor]) -> torch.Tensor:
    """``||W_after - W_before||`` per tensor; overwrites ``before`` with the difference to save memory."""
    torch._foreach_sub_(before, list(weights))
    return tensor_norms(before)


def grad_sparsity(grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """``[sum |g| per tensor..., count of non-zero entries per tensor...]`` (2n float32 values); the host
    divides by the tensors' sizes. (Per tensor, not ``_foreach_norm`` with ord 1 and 0: on CPU those take
    ~4x as long as ``abs().sum()`` and ``bool().sum()``; an int32 count is exact below 2**31 entries and twice
    as fast as the default int64 one on CPU.)"""
    device = grads[0].device
    sums = [g.abs().sum(dtype=torch.float32) for g in grads]
    nonzero = [g.bool().sum(dtype=torch.int32 if g.numel() < 2**31 else torch.int64).float() for g in grads]
    return torch.stack([t if t.device == device else t.to(device) for t in sums + nonzero])


def adam_moments(grad: torch.Tensor, exp_avg_sq: torch.Tensor, step: torch.Tensor | float, beta2: float | None,
                 eps: float) -> torch.Tensor:
    """``[update RMS, min sqrt(v_hat), median sqrt(v_hat), lag RMS]`` for one Adam-family tensor.

    update RMS = sqrt(mean(g^2 / max(v_hat, eps^2))), v_hat = v / (1 - beta2^t) bias-corrected: the quantity
    StableAdamW clips (Wortsman et al. 2023, "Stable and low-precision training for large-scale vision-language
    models"); far above 1, the second-moment estimate lags behind the gradients and a loss spike follows.
    Read after ``optimizer.step()``, so v includes this step's gradient, as in the paper. The lag RMS is the same
    mean over the entries whose stored v its dtype holds at full precision (at least the smallest normal number) or
    that had no gradient: a subnormal or zero v in float16 lost the gradients' small increments, it does not lag.
    """
    v = exp_avg_sq.detach().float()
    if beta2 is not None:
        if isinstance(step, torch.Tensor) and step.device == v.device and v.device.type != "cpu":
            correction = (1.0 - beta2 ** step.float()).clamp_min(1e-30)  # capturable Adam: stays on the device
        else:
            correction = max(1.0 - beta2 ** float(step), 1e-30)  # a CPU step count: read free of any GPU sync
        v = v / correction
    g = grad.detach().float()
    ratio = g.square() / v.clamp_min(eps * eps)
    rms = ratio.mean().sqrt()
    tiny = torch.finfo(exp_avg_sq.dtype).tiny
    if tiny <= torch.finfo(torch.float32).tiny:
        # float32, bfloat16: a v below the smallest normal number needs |g| < 1e-17, whose g / eps adds nothing
        # to the RMS: the lag RMS is the RMS, and no pass for the mask
        lag = rms
    else:
        held = (exp_avg_sq.detach() >= tiny) | (grad.detach() == 0)
        lag = (ratio * held).sum().div(held.sum().clamp_min(1)).sqrt()
    flat = v.reshape(-1)
    stride = max(1, flat.numel() // MEDIAN_SAMPLE)
    # sqrt is monotonic, so the min and the (lower) median of sqrt(v) are the square roots of v's: no pass for sqrt(v)
    return torch.stack([rms, flat.min().sqrt(), flat[::stride].median().sqrt(), lag])


def data_summary(x: torch.Tensor) -> torch.Tensor:
    """``[mean, std, abs max, min, max]`` of a data tensor (population std), float32."""
    x = x.detach().float()
    std, mean = torch.std_mean(x, correction=0)
    low, high = torch.aminmax(x)
    return torch.stack([mean, std, x.abs().max(), low, high])
