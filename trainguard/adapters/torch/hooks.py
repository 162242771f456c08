"""Forward hooks: activation health on sampled forwards, and the search for the first non-finite module.

Neither costs anything while it is not needed: the activation probe's hook exists only for the one forward
the guard samples, and the non-finite search runs its own forward, once, after a NaN/Inf has been seen.

Nothing of trainguard is left on the user's model between steps: the probe listens through torch's global
module forward hook (``register_module_forward_hook``), keyed by module identity, so ``copy.deepcopy(model)``
(an EMA copy) carries no hook and ``torch.save(model)`` pickles nothing of trainguard.
"""
from __future__ import annotations

import inspect
import weakref
from typing import Any, Callable

import torch
from torch import nn

__all__ = ["SIGMOID_SATURATION", "TANH_SATURATION", "OUTPUT", "INPUTS", "activation_kind", "ActivationProbe",
           "locate_non_finite", "InputsDoNotFit"]

# Inputs beyond these bounds count as saturated: the slope there is under 3% of its maximum,
# sigmoid'(5) = 0.0066 (max 0.25), tanh'(2.5) = 0.027 (max 1). trainguard's own bounds, softer than the
# float32 saturation points (where the slope is exactly 0) so that a layer is flagged before it is stuck.
SIGMOID_SATURATION = 5.0
TANH_SATURATION = 2.5
# Names of the two places that are no module: the model's output and its inputs.
OUTPUT = "(output)"
INPUTS = "(inputs)"

_KINDS: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.ReLU, "relu"), (nn.ReLU6, "relu"), (nn.Sigmoid, "sigmoid"), (nn.Tanh, "tanh"),
)


def activation_kind(module: nn.Module) -> str | None:
    """``"relu"``, ``"sigmoid"``, ``"tanh"`` for the activation modules the probe watches, else None.
    (Activations called as functions inside a module's forward cannot be hooked, so they are not seen.)"""
    for cls, kind in _KINDS:
        if isinstance(module, cls):
            return kind
    return None


def _health(kind: str, inputs: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
    """``[dead or saturated fraction, output std]`` on the device.

    relu: fraction of units (every entry but the batch dimension) that are <= 0 for every sample of the batch.
    A ReLU's output is >= 0 or NaN, so a unit is alive exactly when its sum over the batch, NaNs skipped, is > 0:
    one reduction (``(units > 0).any(dim=0)`` was a comparison pass and a strided reduction, 12x as long on a
    conv layer's output on CPU).
    sigmoid / tanh: fraction of input entries beyond the saturation bound. output: no health value (NaN).
    """
    out = output.detach().float()
    std = out.std(correction=0) if out.numel() > 0 else out.new_full((), float("nan"))  # a fill, not a copy
    if kind == "relu":
        units = out.reshape(out.shape[0], -1) if out.dim() > 1 else out.reshape(1, -1)
        health = 1.0 - (torch.nansum(units, dim=0) > 0).float().mean()
    elif kind in ("sigmoid", "tanh") and inputs and isinstance(inputs[0], torch.Tensor):
        bound = SIGMOID_SATURATION if kind == "sigmoid" else TANH_SATURATION
        health = (inputs[0].detach().abs() > bound).float().mean()
    else:
        health = out.new_full((), float("nan"))
    return torch.stack([health, std])


class ActivationProbe:
    """Records activation health during ONE training forward (the first grad-enabled call of each module).

    ``install()`` before the forward, ``collect()`` after it (which removes the hook). The model's own output
    is recorded too, as ``OUTPUT`` with kind ``"output"`` (its std shows a collapse of the predictions).
    One global forward hook serves every module (see the module docstring); other models' calls are ignored.
    A hook never raises into the user's forward: a failure is kept in ``error`` for the guard to report.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.targets = {id(m): (name, kind) for name, m in model.named_modules() if (kind := activation_kind(m))}
        self.targets.setdefault(id(model), (OUTPUT, "output"))
        self.records: dict[str, tuple[str, torch.Tensor]] = {}
        self.handle: torch.utils.hooks.RemovableHandle | None = None
        self.error: BaseException | None = None

    @property
    def installed(self) -> bool:
        return self.handle is not None

    def install(self) -> None:
        self.remove()
        self.records = {}
        self.handle = torch.nn.modules.module.register_module_forward_hook(_WeakHook(self))
        # A guard dropped without close() (an exception in the loop, outside a `with`) takes its probe along:
        # the process-wide hook goes with it instead of staying on every later model's forward.
        self._release = weakref.finalize(self, self.handle.remove)

    def _record(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        target = self.targets.get(id(module))
        if target is None:
            return
        name, kind = target
        if name in self.records or not torch.is_grad_enabled() or not isinstance(output, torch.Tensor):
            return  # an evaluation pass, a second micro-batch, or an output we cannot summarise
        try:
            with torch.no_grad():
                self.records[name] = (kind, _health(kind, inputs, output))
        except Exception as e:  # noqa: BLE001 - contained, reported by the guard
            self.error = e
            self.remove()

    def collect(self) -> tuple[list[tuple[str, str]], torch.Tensor | None]:
        """Removes the hook; returns ``[(name, kind)]`` in forward order and their values (2 per module)."""
        self.remove()
        records, self.records = self.records, {}
        if not records:
            return [], None
        meta = [(name, kind) for name, (kind, _) in records.items()]
        return meta, torch.cat([values for _, values in records.values()])

    def remove(self) -> None:
        if self.handle is not None:
            self._release.detach()
            self.handle.remove()
            self.handle = None


class _WeakHook:
    """The global hook's callable: it holds its probe weakly, so the hook keeps neither the probe nor its model
    (nor the guard that owns them) alive."""

    def __init__(self, probe: ActivationProbe):
        self.probe = weakref.ref(probe)

    def __call__(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        probe = self.probe()
        if probe is not None:
            probe._record(module, inputs, output)


def _non_finite(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.is_floating_point() and not bool(torch.isfinite(value).all())
    if isinstance(value, (tuple, list)):
        return any(_non_finite(v) for v in value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    return False


class InputsDoNotFit(TypeError):
    """``inputs=`` is not the model's whole forward call (e.g. one of several arguments, passed for the data
    checks): the NaN search cannot re-run the forward. The user's choice, not the guard's failure."""


def _arguments(inputs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if isinstance(inputs, dict):
        return (), inputs
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), {}
    return (inputs,), {}


def _call(model: nn.Module, inputs: Any) -> Any:
    args, kwargs = _arguments(inputs)
    try:
        inspect.signature(model.forward).bind(*args, **kwargs)
    except TypeError as e:
        raise InputsDoNotFit(f"inputs= does not fit {type(model).__name__}.forward ({e}): pass every forward "
                             "argument, as a tuple (model(*x)) or a dict (model(**x))") from None
    except ValueError:  # no inspectable signature: the call itself will say
        pass
    return model(*args, **kwargs)


def locate_non_finite(model: nn.Module, inputs: Any) -> str | None:
    """The first module, in forward order, whose output is non-finite when ``model(inputs)`` runs now.

    ``inputs`` is a tensor (``model(x)``), a tuple/list (``model(*x)``) or a dict (``model(**x)``).
    Returns ``INPUTS`` when the inputs themselves hold NaN/Inf, the module's name (``"0"``, ``"fc1"``), the
    model's class name when only its own code (not a submodule) produced the non-finite value, or None when
    the whole forward is finite (then the loss function, or the update, is where it happened).

    Forward hooks fire when a module finishes, so the first hook that sees a non-finite output names the
    innermost module that produced it first. The forward runs under ``torch.no_grad()`` and leaves nothing
    behind: the RNG state (dropout) is forked and restored, and so are the buffers (BatchNorm statistics).
    """
    if _non_finite(inputs):
        return INPUTS
    found: list[str] = []

    def hook(name: str) -> Callable[..., None]:
        def check(module: nn.Module, args: Any, output: Any) -> None:
            if not found and _non_finite(output):
                found.append(name or type(model).__name__)
        return check

    handles = [m.register_forward_hook(hook(name)) for name, m in model.named_modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    cuda = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=cuda):
            _call(model, inputs)
    finally:
        for handle in handles:
            handle.remove()
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
    return found[0] if found else None
