"""Forward hooks: activation health on sampled forwards, and the search for the first non-finite module.

Neither costs anything while it is not needed: the activation probe's hooks exist only for the one forward
the guard samples, and the non-finite search runs its own forward, once, after a NaN/Inf has been seen.

Activations called as functions (``torch.tanh``, ``F.relu``, ``x.sigmoid()``, in place or not, in a module's
forward or in a LightningModule's ``training_step`` between module calls) have no module to hook. The probe reads
them from the autograd graph instead, during the sampled forward: each ReLU/sigmoid/tanh node saves its output for
the backward pass, so its health is computed from that saved tensor, read while the graph is built (the backward
frees it), at the module boundaries the hooks see anyway. Nothing is added to the graph or to the mode stack
(a ``TorchFunctionMode`` would be thread-local, stack-ordered, and active across the user's own code between
module calls). See :class:`ActivationProbe`.

Nothing of trainguard is left on the user's model between steps: the probe listens through torch's global
module forward hooks (``register_module_forward_pre_hook``, ``register_module_forward_hook``), keyed by module
identity, so ``copy.deepcopy(model)`` (an EMA copy) carries no hook and ``torch.save(model)`` pickles nothing of
trainguard.
"""
from __future__ import annotations

import inspect
import math
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
    """``"relu"``, ``"sigmoid"``, ``"tanh"`` for the activation modules the probe hooks, else None (activations
    called as functions are read from the autograd graph: ``ActivationProbe``)."""
    for cls, kind in _KINDS:
        if isinstance(module, cls):
            return kind
    return None


# The autograd nodes of the activations read from the graph; each saves its output ("result") for the backward.
_NODE_KINDS = {"ReluBackward0": "relu", "SigmoidBackward0": "sigmoid", "TanhBackward0": "tanh"}
# The saturation bounds above, as bounds on the output (both functions are monotonic): |tanh(x)| > tanh(2.5),
# |sigmoid(x) - 1/2| > sigmoid(5) - 1/2.
_TANH_OUTPUT_BOUND = math.tanh(TANH_SATURATION)
_SIGMOID_OUTPUT_BOUND = 1.0 / (1.0 + math.exp(-SIGMOID_SATURATION)) - 0.5
# Recurrent modules whose gates are sigmoid/tanh switches by design (a saturated gate is an open or closed one).
_GATED_MODULES = (nn.RNNBase, nn.RNNCellBase)
_HOPS = 3  # graph nodes of one input (a view, a scalar add or multiply) passed through to find a producer or a gate
_MAX_NODES = 200_000  # graph nodes read per sampled forward at most: a bound on the probe's cost


def _unit_health(out: torch.Tensor) -> torch.Tensor:
    """Dead fraction of a ReLU's output: units (every entry but the batch dimension) <= 0 for every sample.
    A ReLU's output is >= 0 or NaN, so a unit is alive exactly when its sum over the batch, NaNs skipped, is > 0:
    one reduction (``(units > 0).any(dim=0)`` was a comparison pass and a strided reduction, 12x as long on a
    conv layer's output on CPU)."""
    units = out.reshape(out.shape[0], -1) if out.dim() > 1 else out.reshape(1, -1)
    return 1.0 - (torch.nansum(units, dim=0) > 0).float().mean()


def _std(out: torch.Tensor) -> torch.Tensor:
    return out.std(correction=0) if out.numel() > 0 else out.new_full((), float("nan"))  # a fill, not a copy


def _result_health(kind: str, result: torch.Tensor) -> torch.Tensor:
    """``[dead or saturated fraction, output std]`` from an activation's output (the tensor its autograd node
    saved): the saturation bounds as bounds on the output."""
    out = result.detach().float()
    if kind == "relu":
        health = _unit_health(out)
    elif kind == "tanh":
        health = (out.abs() > _TANH_OUTPUT_BOUND).float().mean()
    else:
        health = ((out - 0.5).abs() > _SIGMOID_OUTPUT_BOUND).float().mean()
    return torch.stack([health, _std(out)])


def _health(kind: str, inputs: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
    """``[dead or saturated fraction, output std]`` on the device.

    relu: fraction of units that are <= 0 for every sample of the batch (``_unit_health``).
    sigmoid / tanh: fraction of input entries beyond the saturation bound. output: no health value (NaN).
    """
    out = output.detach().float()
    std = _std(out)
    if kind == "relu":
        health = _unit_health(out)
    elif kind in ("sigmoid", "tanh") and inputs and isinstance(inputs[0], torch.Tensor):
        bound = SIGMOID_SATURATION if kind == "sigmoid" else TANH_SATURATION
        health = (inputs[0].detach().abs() > bound).float().mean()
    else:
        health = out.new_full((), float("nan"))
    return torch.stack([health, std])


class ActivationProbe:
    """Records activation health during ONE training forward (the first grad-enabled call of each module).

    ``install()`` before the forward, ``collect()`` after it (which removes the hooks). The model's own output
    is recorded too, as ``OUTPUT`` with kind ``"output"`` (its std shows a collapse of the predictions).
    Two global hooks (before and after each module's forward) serve every module (see the module docstring);
    other models' calls are ignored. A hook never raises into the user's forward: a failure is kept in ``error``
    for the guard to report.

    Activations called as functions are read from the autograd graph at the module boundaries of the sampled
    forward: before a module's forward, the graph of its inputs (what the code around it computed: the parent
    module's forward, or a LightningModule's ``training_step``); after it, the graph of its outputs (what its own
    forward computed). Each graph node is read once. A ReLU/sigmoid/tanh node is recorded when its saved output
    can be read as it is (no saved-tensor hooks: activation checkpointing would recompute the forward to unpack
    it), named by the module whose output it takes (``"hidden->tanh"``; through up to 3 single-input nodes, a view
    or a scalar multiply), else by the module whose forward created it (``"block:tanh"``). Not recorded:

    - the activation modules' own nodes (hooked as modules), and nodes created inside an RNN/LSTM/GRU module;
    - gates: a sigmoid/tanh whose output multiplies another tensor (GELU's tanh form, Hendrycks & Gimpel 2016;
      SiLU ``x * sigmoid(x)``, Elfwing et al. 2018; GLU, Dauphin et al. 2017; a hand-written LSTM cell, Gers et al.
      2000): its saturation is a switch set open or closed, not a unit without slope;
    - a node created outside this model's modules whose input no module of this model produced (another model's
      graph: a GAN's generator, seen from the discriminator's guard).
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.modules = {id(m): (name, m) for name, m in model.named_modules()}
        self.targets = {id(m): (name, kind) for name, m in model.named_modules() if (kind := activation_kind(m))}
        self.targets.setdefault(id(model), (OUTPUT, "output"))
        self.root_name = type(model).__name__
        self.records: dict[str, tuple[str, torch.Tensor]] = {}
        self.handles: tuple[torch.utils.hooks.RemovableHandle, ...] = ()
        self.error: BaseException | None = None
        self._reset_graph()

    def _reset_graph(self) -> None:
        self._calls: list[nn.Module] = []  # this model's module calls in progress, innermost last
        self._read: set[Any] = set()  # graph nodes already read in this forward
        self._produced: dict[Any, str] = {}  # a module's output node -> the (innermost) module's name
        self._gates: set[Any] = set()  # sigmoid/tanh nodes whose output multiplies another tensor
        self._functional: dict[str, Any] = {}  # name -> node of the activations read from the graph

    @property
    def installed(self) -> bool:
        return bool(self.handles)

    def install(self) -> None:
        self.remove()
        self.records = {}
        self._reset_graph()
        hook = _WeakHook(self)
        self.handles = (torch.nn.modules.module.register_module_forward_pre_hook(hook.enter),
                        torch.nn.modules.module.register_module_forward_hook(hook))
        # A guard dropped without close() (an exception in the loop, outside a `with`) takes its probe along:
        # the process-wide hooks go with it instead of staying on every later model's forward.
        self._release = weakref.finalize(self, _remove_all, self.handles)

    def _enter(self, module: nn.Module, inputs: tuple[Any, ...]) -> None:
        if id(module) not in self.modules:
            return
        if torch.is_grad_enabled():
            self._contained(self._read_graph, inputs, self._calls[-1] if self._calls else None)
        self._calls.append(module)

    def _record(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        if id(module) not in self.modules:
            return
        if module in self._calls:  # popped up to it: an inner forward that raised never came back here
            while self._calls.pop() is not module:
                pass
        if not torch.is_grad_enabled():
            return  # an evaluation pass
        self._contained(self._read_graph, output, module, True)
        target = self.targets.get(id(module))
        if target is None:
            return
        name, kind = target
        if name in self.records:
            return  # a second micro-batch
        if kind == "output" and not isinstance(output, torch.Tensor):
            output = self._activated_output(output)
        if isinstance(output, torch.Tensor):
            self._contained(self._record_module, name, kind, inputs, output)

    def _activated_output(self, output: Any) -> torch.Tensor | None:
        """Of a model that returns several tensors (a VAE's reconstruction, mean and log-variance), the one that
        a recorded activation produced: the model's output non-linearity, whose record the output's std names."""
        recorded = set(self._functional.values())
        recorded.update(node for node, name in self._produced.items() if name in self.records)
        return next((t for t in _tensors(output) if t.grad_fn is not None and t.grad_fn in recorded), None)

    def _record_module(self, name: str, kind: str, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        with torch.no_grad():
            self.records[name] = (kind, _health(kind, inputs, output))

    def _contained(self, fn: Callable[..., None], *args: Any) -> None:
        if self.error is not None:
            return
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - contained, reported by the guard
            self.error = e
            self.remove()

    def _read_graph(self, values: Any, creator: nn.Module | None, outputs: bool = False) -> None:
        """Reads the graph nodes behind ``values`` not read yet: they were created by ``creator``'s forward
        (None: outside this model's modules); ``outputs``: ``values`` are ``creator``'s outputs. See the class
        docstring."""
        read, found = self._read, []
        pending = [t.grad_fn for t in _tensors(values) if t.grad_fn is not None and t.grad_fn not in read]
        while pending and len(read) < _MAX_NODES:
            node = pending.pop()
            if node in read:
                continue
            read.add(node)
            inputs = [n for n, _ in node.next_functions if n is not None]
            kind = _NODE_KINDS.get(type(node).__name__)
            if kind is not None:
                found.append((node, kind))
            elif len(inputs) >= 2 and type(node).__name__ == "MulBackward0":
                self._gates.update(g for g in (_through(n, _is_gate) for n in inputs) if g is not None)
            pending.extend(n for n in inputs if n not in read)
        if outputs:
            name = self.modules[id(creator)][0]
            for t in _tensors(values):
                if t.grad_fn is not None:
                    self._produced.setdefault(t.grad_fn, name)
        if not found or isinstance(creator, _GATED_MODULES) or (creator is not None and id(creator) in self.targets
                                                                 and creator is not self.model):
            return
        for node, kind in sorted(found, key=lambda item: item[0]._sequence_nr()):
            producer = _through(node.next_functions[0][0], self._produced.__contains__)
            if producer is not None:
                name = f"{self._produced[producer]}->{kind}"
            elif creator is not None:
                name = f"{self.modules[id(creator)][0] or self.root_name}:{kind}"
            else:
                continue  # not this model's: no module of it produced the input
            if name in self._functional or name in self.records:
                continue
            saved = node._raw_saved_result
            if getattr(saved, "unpack_hook", True) is not None:
                continue  # saved-tensor hooks (checkpointing, offloading) or a torch that cannot tell
            try:
                result = node._saved_result
            except RuntimeError:
                continue  # freed by a backward already, or modified in place: nothing to read
            with torch.no_grad():
                self.records[name] = (kind, _result_health(kind, result))
            self._functional[name] = node

    def collect(self) -> tuple[list[tuple[str, str]], torch.Tensor | None]:
        """Removes the hooks; returns ``[(name, kind)]`` in forward order and their values (2 per record)."""
        self.remove()
        gated = {name for name, node in self._functional.items() if node in self._gates}
        records = {name: record for name, record in self.records.items() if name not in gated}
        self.records = {}
        self._reset_graph()
        if not records:
            return [], None
        meta = [(name, kind) for name, (kind, _) in records.items()]
        return meta, torch.cat([values for _, values in records.values()])

    def remove(self) -> None:
        if self.handles:
            self._release.detach()
            _remove_all(self.handles)
            self.handles = ()


def _remove_all(handles: tuple[torch.utils.hooks.RemovableHandle, ...]) -> None:
    for handle in handles:
        handle.remove()


def _tensors(values: Any) -> list[torch.Tensor]:
    """The tensors of a module's inputs or output: a tensor, or those of a tuple, list or dict (one level)."""
    if isinstance(values, torch.Tensor):
        return [values]
    if isinstance(values, dict):
        values = values.values()
    elif not isinstance(values, (tuple, list)):
        return []
    return [v for v in values if isinstance(v, torch.Tensor)]


def _is_gate(node: Any) -> bool:
    return _NODE_KINDS.get(type(node).__name__) in ("sigmoid", "tanh")


def _through(node: Any, wanted: Callable[[Any], bool]) -> Any:
    """The first node ``wanted`` reached from ``node`` through at most ``_HOPS`` single-input nodes, else None."""
    for _ in range(_HOPS + 1):
        if node is None:
            return None
        if wanted(node):
            return node
        inputs = [n for n, _ in node.next_functions if n is not None]
        node = inputs[0] if len(inputs) == 1 else None
    return None


class _WeakHook:
    """The global hooks' callable: it holds its probe weakly, so the hooks keep neither the probe nor its model
    (nor the guard that owns them) alive."""

    def __init__(self, probe: ActivationProbe):
        self.probe = weakref.ref(probe)

    def enter(self, module: nn.Module, inputs: tuple[Any, ...]) -> None:
        probe = self.probe()
        if probe is not None:
            probe._enter(module, inputs)

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
