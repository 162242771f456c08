"""The Keras effector: carries out the core policies' :class:`~trainguard.core.policies.Plan` on a Keras run.

The decisions are the core's (``trainguard.core.session.PolicyRepair``: ``"safe"``, ``"auto"`` or the user's own
chain); this module only executes the plan after each step:

- standing orders (skip non-finite steps, skip gradient-norm outliers, clip to ``clip_norm``/``clip_value``, the
  LR scale) become the wrapper's :class:`~trainguard.adapters.keras.records.Orders`, which the next updates
  execute (the core's ``step_decision``, written with ``ops`` for compiled steps);
- one-shot orders run on the host between steps: in-memory snapshots and rollback-and-skip (model weights,
  optimizer state and its epsilon, so a trial that raised it is undone too), resetting the optimizer's moments,
  raising Adam's epsilon (at least to what the weights' dtype represents), recycling dormant units (ReDo,
  :func:`recycle_dead_layer`) where a whole ReLU layer is dead, a saturated tanh/sigmoid output's units scaled
  back (:func:`shrink_saturated_layers`), and a collapsed sigmoid/tanh stack's Dense layers renormalized on a
  training batch (:func:`renormalize_on_batch`: the batch the host holds, or under a compiled TensorFlow step the
  inputs the next step keeps on request).

BatchNormalization layers that ran in inference mode in a training step (the loop called ``model(x)`` without
``training=True``) are put in training mode for the rest of the run through the mode check's wrapper
(:meth:`~trainguard.adapters.keras.modes.ModeRecorder.train`: torch backend, calls that record gradients and
got no ``training`` argument), with the warning that names the fix.

Not carried out on Keras, said once in the run log: unit-wise clipping (AGC) and the StableAdamW update cap need
a per-tensor learning rate, which Keras optimizers do not expose; weighing a batch's gradient by its size; a
variable's update multiplied (``update_scale``) outside eager updates (a compiled TensorFlow step, JAX); Dropout
(and BatchNormalization on the TensorFlow and JAX backends) back in training mode, because Keras takes the mode
per call. Each order not carried out, these and a ReDo or an epsilon that finds nothing to change, is reported
back as a :class:`~trainguard.core.policies.Refusal` (a trial of it ends at
once, unapplied).
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import keras
import numpy as np

from trainguard.adapters.keras import collect, private
from trainguard.adapters.keras.activations import SIGMOID_SATURATION, TANH_SATURATION, activation_kind
from trainguard.adapters.keras.modes import ModeRecorder, all_layers, wrap_call
from trainguard.adapters.keras.records import standing_orders
from trainguard.core.actions import Action
from trainguard.core.findings import Finding
from trainguard.core.policies import Plan, Refusal, step_decision
from trainguard.core.session import NOTHING, Carried
from trainguard.core.stats import StepStats

__all__ = ["KerasEffector", "recycle_dead_layer", "shrink_saturated_layers", "renormalize_on_batch"]

_UNSUPPORTED = {
    "agc": "unit-wise clipping is not carried out on Keras; global-norm clipping is",
    "adam_update_cap": "Keras optimizers have no per-tensor learning rate to cap the Adam update with",
    "batch_weight": "weighing a batch's gradient by its size is carried out on torch only",
    "layer_trust": "layer-wise update normalization (LARS-style) is carried out on torch only",
}
_PLAN_FIELD = {"agc": "agc_clipping"}  # the others are named as in the Plan
_NO_SATURATED_UNIT = "no unit before the activation can reach beyond its saturation bound"


class KerasEffector:
    """``optimizer`` is the :class:`GuardedOptimizer`; ``read`` reads a variable's value and ``before_write``
    runs before the host writes one (both differ under the JAX trainer, see the callback); ``modes`` is the
    session's mode check (None without a model); ``inputs`` gives the last training batch's inputs as the host
    holds them (None where it does not: a compiled TensorFlow fit step, whose ``graph_batch`` can keep the next
    step's inputs on request)."""

    def __init__(self, optimizer: Any, model: Any, variables: list[Any], read: Callable[[Any], np.ndarray],
                 before_write: Callable[[], None], snapshots: bool, modes: ModeRecorder | None = None,
                 inputs: Callable[[], Any] = lambda: None, graph_batch: Any = None):
        self.optimizer = optimizer
        self.inputs = inputs
        self.graph_batch = graph_batch
        self._renormalize_next: tuple[str, ...] = ()  # layers to renormalize on the batch the next step keeps
        self.model = model
        self.modes = modes
        self.variables = variables
        self.read = read
        self.before_write = before_write
        self.snapshots: dict[int, list[np.ndarray]] = {}
        self._epsilons: dict[int, Any] = {}  # the optimizer's epsilon at each snapshot: an attribute, not a variable
        self._unsupported: set[str] = set()
        self._window = 0  # batches still to skip after a rollback (the wrapper counts them down too)
        self._rollback_skipped: list[int] = []  # steps skipped since the last rollback
        self._rollback_step: int | None = None
        self._dead: dict[str, float] = {}  # the last sampled dead fraction of each ReLU layer
        if snapshots:
            self._take_snapshot(0, keep=None)

    def stand(self, plan: Plan) -> None:
        self.optimizer.set_orders(standing_orders(plan))

    # ----------------------------------------------------------------- per step
    def executed(self, stats: StepStats, findings: tuple[Finding, ...]) -> list[Action]:
        """What the wrapper did to this step under the orders it held, recorded as the torch effector does: a
        skipped or clipped update, and the batches skipped after a rollback as one ``skip_batches`` action."""
        orders = self.optimizer.orders
        for a in stats.activations:
            if a.kind == "relu" and a.dead_fraction is not None:
                self._dead[a.name] = a.dead_fraction
        if self._window > 0:  # the wrapper skipped this batch, inside a rollback's skip window
            self._window -= 1
            self._rollback_skipped.append(stats.step)
            return [self._skipped_record()] if self._window == 0 else []
        norm = stats.grad_norm if stats.grad_norm is not None else math.nan
        plan = Plan(skip_non_finite=orders.skip_non_finite, skip_above=orders.skip_above, clip_norm=orders.clip_norm)
        decision = step_decision(plan, stats.loss_finite and stats.grads_finite, norm)
        reason = next((f.code for f in findings if f.code in ("non_finite", "exploding_gradient", "loss_spike")),
                      decision.reason)
        if not stats.applied:
            return [Action("skip_step", stats.step, reason, {"grad_norm": norm, "skip_above": orders.skip_above,
                                                             "why": decision.reason}, {})]
        if stats.extra.get("clipped"):
            return [Action("clip", stats.step, "grad_outlier" if reason == "clip" else reason,
                           {"max_norm": orders.clip_norm, "grad_norm": norm, "coef": decision.clip_coef}, {})]
        return []

    def carry_out(self, plan: Plan, stats: StepStats) -> Carried:
        effects: dict[str, dict[str, Any]] = {}
        events: list[tuple[str, dict[str, Any]]] = []
        refused: list[Refusal] = []
        if plan.rollback is not None:
            effects["rollback"] = self._rollback(plan.rollback.label)
            if effects["rollback"]["restored"]:
                self._window = plan.rollback.skip_batches
                self._rollback_step = stats.step
        if plan.snapshot:
            self._take_snapshot(stats.step + 1, keep=plan.snapshot, pinned=plan.keep_snapshot)
        if plan.reset_moments:
            effects["reset_moments"] = self._reset_moments()
        if plan.adam_eps is not None:
            effects["adam_epsilon"] = effects["adam_eps"] = raised = self._raise_epsilon(plan.adam_eps)
            if raised.get("applied") is False:
                refused.append(Refusal("adam_eps", raised["why"]))
        if plan.recycle_units:
            if self.model is None:
                refused.append(Refusal("recycle_units", "the guard was given no model to recycle units in"))
            else:
                self.before_write()
                effects["recycle_dormant"] = recycled = recycle_dead_layer(
                    self.model, self.optimizer.inner_optimizer, plan.recycle_units, self._dead, seed=stats.step)
                if not recycled["units"]:
                    why = "; ".join(recycled.get("not_applied", ["no ReLU layer named"]))
                    refused.append(Refusal("recycle_units", why))
        if plan.desaturate:
            effects["shrink_saturated_output"] = shrunk = self._on_model(
                lambda: shrink_saturated_layers(self.model, self.optimizer.inner_optimizer, plan.desaturate))
            if not shrunk["units"]:
                refused.append(Refusal("desaturate", "; ".join(shrunk.get("not_applied", [_NO_SATURATED_UNIT]))))
        if plan.renormalize and self.inputs() is None and self.graph_batch is not None \
                and self.graph_batch.arm_capture():
            # a compiled TensorFlow step: its batch is in the graph; the next step keeps its inputs for the host
            self._renormalize_next = plan.renormalize
            effects["renormalize_saturating_layers"] = {"on": "the inputs of the next training batch"}
        elif plan.renormalize or self._renormalize_next:
            names = plan.renormalize or self._renormalize_next
            inputs = self.inputs() if plan.renormalize else self.graph_batch.take_capture()
            self._renormalize_next = ()
            renormalized = self._on_model(
                lambda: renormalize_on_batch(self.model, self.optimizer.inner_optimizer, names, inputs))
            if plan.renormalize:
                effects["renormalize_saturating_layers"] = renormalized
            else:
                events.append(("renormalize_saturating_layers", renormalized))
            if not renormalized["units"]:
                refused.append(Refusal("renormalize", "; ".join(renormalized["not_applied"])))
        if plan.restore_modules:
            done, not_done = (self.modes.train(plan.restore_modules) if self.modes is not None
                              else ([], dict.fromkeys(plan.restore_modules, "the guard was given no model")))
            effects["restore_mode"] = {"applied": bool(done), "layers": done,
                                       **({"not_applied": not_done} if not_done else {})}
            if not done:
                refused.append(Refusal("restore_modules", "; ".join(dict.fromkeys(not_done.values()))))
        if plan.update_scale and any(a.kind == "scale_output_steps" for a in plan.actions):
            effects["scale_output_steps"] = scaled = self._update_scale(plan.update_scale)
            if scaled.get("applied") is False:
                refused.append(Refusal("update_scale", scaled["why"]))
        for order, active in (("agc", plan.agc_clipping is not None),
                              ("adam_update_cap", plan.adam_update_cap is not None),
                              ("batch_weight", plan.batch_weight is not None),
                              ("layer_trust", plan.layer_trust is not None)):
            if active:
                effects[order] = {"applied": False, "why": _UNSUPPORTED[order]}
                refused.append(Refusal(_PLAN_FIELD.get(order, order), _UNSUPPORTED[order]))
                if order not in self._unsupported:
                    self._unsupported.add(order)
                    events.append(("unsupported_order", {"order": order, "why": _UNSUPPORTED[order]}))
        for action in plan.actions:
            if action.kind == "restore_mode":
                trained = effects.get("restore_mode", {}).get("layers")
                what = f" ({', '.join(trained)} put in training mode)" if trained else ""
                warnings.warn(f"trainguard: layers in inference mode in a training step at step {action.step}: "
                              f"{', '.join(action.params['modules'])}{what}; call the model with training=True in "
                              "the training step", UserWarning, stacklevel=6)
        if plan.lr_scale != 1.0:
            effects["lr_backoff"] = effects["backoff"] = {"lr_scale": plan.lr_scale}
        orders = standing_orders(plan, self._window)
        if orders != self.optimizer.orders or plan.rollback is not None:
            self.before_write()
            self.optimizer.set_orders(orders, force=plan.rollback is not None)
        if not (effects or events or refused):
            return NOTHING
        return Carried(effects=effects, events=tuple(events), refused=tuple(refused))

    def _skipped_record(self) -> Action:
        steps, self._rollback_skipped = self._rollback_skipped, []
        return Action("skip_batches", steps[0], "rollback",
                      {"steps": steps, "count": len(steps), "after_rollback_at": self._rollback_step}, {})

    def close(self) -> Carried:
        actions = (self._skipped_record(),) if self._rollback_skipped else ()
        return Carried(actions=actions)

    # ----------------------------------------------------------------- one-shot orders
    def _on_model(self, change: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """A change of the model's weights, made writable first; refused without a model."""
        if self.model is None:
            return {"units": 0, "layers": [], "not_applied": ["the guard was given no model to change"]}
        self.before_write()
        return change()

    def _state_variables(self) -> list[Any]:
        model_vars = list(self.model.variables) if self.model is not None else list(self.variables)
        seen = {id(v) for v in model_vars}
        inner = self.optimizer.inner_optimizer
        return model_vars + [v for v in inner.variables if id(v) not in seen]

    def _take_snapshot(self, label: int, keep: int | None, pinned: int | None = None) -> None:
        """Keeps the ``keep`` newest, and the one labelled ``pinned`` (a running trial's) whatever its age."""
        self.snapshots[label] = collect.weight_arrays(self._state_variables(), self.read)
        self._epsilons[label] = getattr(self.optimizer.inner_optimizer, "epsilon", None)
        if keep is not None:
            for old in sorted(self.snapshots)[:-keep]:
                if old != pinned:
                    del self.snapshots[old]
        for old in [k for k in self._epsilons if k not in self.snapshots]:
            del self._epsilons[old]

    def _rollback(self, label: int) -> dict[str, Any]:
        saved = self.snapshots.get(label)
        if saved is None:
            return {"restored": False, "why": f"no snapshot labelled {label} is held"}
        variables = self._state_variables()
        if len(saved) != len(variables) or any(tuple(np.shape(value)) != tuple(var.shape)
                                               for var, value in zip(variables, saved)):
            raise ValueError(f"the snapshot of step {label} does not fit the model and optimizer any more")
        self.before_write()
        for var, value in zip(variables, saved):
            var.assign(value.astype(var.dtype) if hasattr(value, "astype") else value)
        if self._epsilons.get(label) is not None:  # a trial that raised it is undone with the rest
            self.optimizer.inner_optimizer.epsilon = self._epsilons[label]
        for newer in [k for k in self.snapshots if k > label]:
            del self.snapshots[newer]
            self._epsilons.pop(newer, None)
        return {"restored": True, "to_step": label}

    def _reset_moments(self) -> dict[str, Any]:
        self.before_write()
        inner = self.optimizer.inner_optimizer
        shapes = {tuple(v.shape) for v in self.variables}
        keep = {id(inner.iterations), id(private.learning_rate_slot(inner))}
        reset = 0
        for var in inner.variables:
            if id(var) in keep or tuple(var.shape) not in shapes or not tuple(var.shape):
                continue
            var.assign(np.zeros(tuple(var.shape), dtype=str(var.dtype)))
            reset += 1
        return {"reset_variables": reset}

    def _update_scale(self, orders: tuple[tuple[str, float], ...]) -> dict[str, Any]:
        """Whether the wrapper can multiply the named variables' updates: on eager updates (the torch backend, an
        eager custom loop), by an optimizer without weight decay (the decay, part of the update, would be scaled
        too)."""
        if self.optimizer.host.eager is not True:
            return {"applied": False, "why": "a variable's update is multiplied on eager updates only, not in a "
                                             "compiled TensorFlow step or under JAX"}
        if getattr(self.optimizer.inner_optimizer, "weight_decay", None):
            return {"applied": False, "why": "the optimizer applies weight decay, which the multiplied update "
                                             "would scale too"}
        paths = {v.path for v in self.variables}
        found = [name for name, _ in orders if name in paths]
        if not found:
            return {"applied": False, "why": "no trainable variable of those names"}
        return {"tensors": found}

    def _raise_epsilon(self, eps: float) -> dict[str, Any]:
        inner = self.optimizer.inner_optimizer
        old = getattr(inner, "epsilon", None)
        if old is None:
            return {"applied": False, "why": "the optimizer has no epsilon"}
        # at least the smallest normal number of the weights' dtype (6.1e-5 in float16), as the torch effector does
        floats = [np.dtype(str(v.dtype)) for v in self.variables if np.issubdtype(np.dtype(str(v.dtype)), np.floating)]
        target = max([float(eps)] + [float(np.finfo(d).tiny) for d in floats])
        if old < target:
            inner.epsilon = target
        return {"epsilon_before": old, "epsilon": max(old, target), "eps_before": old, "eps": max(old, target)}


def _with_seed(initializer: Any, seed: int) -> Any:
    """The layer's own initializer drawn again with ``seed`` (an initializer without a seed, Zeros, as it is)."""
    config = initializer.get_config()
    if "seed" in config:
        return type(initializer).from_config({**config, "seed": seed})
    return initializer


def _slots(optimizer: Any, variable: Any) -> list[Any]:
    """The optimizer's slot variables of ``variable`` (momentum, Adam's moments): Keras 3 names each after the
    variable's path, ``<optimizer>/<path with _>_<slot>``, with the variable's shape."""
    prefix = variable.path.replace("/", "_") + "_"
    return [v for v in optimizer.variables
            if v.path.split("/", 1)[-1].startswith(prefix) and tuple(v.shape) == tuple(variable.shape)]


def _zero(variable: Any) -> None:
    variable.assign(np.zeros(tuple(variable.shape), dtype=str(variable.dtype)))


def recycle_dead_layer(model: Any, optimizer: Any, names: tuple[str, ...], dead: dict[str, float],
                       seed: int) -> dict[str, Any]:
    """ReDo (Sokar et al. 2023) on Keras, for a ReLU layer whose units were all dead on the last sampled batch
    (the activation probe measures the share of dead units, not which ones; with all of them dead there is no
    doubt): the kernel and bias of the layer that feeds the ReLU (a ``Dense``/``Conv`` with ``activation="relu"``,
    or the layer before a ``ReLU``/``Activation("relu")`` layer) drawn again from the layer's own initializers
    (seeded with the step: the user's RNG is untouched), the next layer's incoming weights from those units set
    to 0 (the network's output does not jump), and the optimizer's slots of those variables set to 0; the model's
    output layer (no layer with a kernel after it) gets the draw made non-negative, as on torch
    (``recycle_dormant_units``). The caller has made the variables writable (``before_write``)."""
    layers = [layer for layer in all_layers(model) if not hasattr(layer, "layers")]
    done: dict[str, Any] = {"units": 0, "layers": [], "not_applied": []}
    for name in names:
        index = next((i for i, layer in enumerate(layers) if layer.name == name), None)
        if index is None or activation_kind(layers[index]) != "relu":
            done["not_applied"].append(f"{name}: no ReLU layer of that name")
            continue
        if dead.get(name, 0.0) < 1.0:
            done["not_applied"].append(f"{name}: {dead.get(name, 0.0):.0%} of its units dead; on Keras only a "
                                       "layer whose every unit is dead is recycled (which units, is not measured)")
            continue
        at = index if getattr(layers[index], "kernel", None) is not None else index - 1
        feeding = layers[at] if at >= 0 and getattr(layers[at], "kernel", None) is not None else None
        if feeding is None:
            done["not_applied"].append(f"{name}: no Dense/Conv layer right before the ReLU")
            continue
        units = int(feeding.kernel.shape[-1])
        fresh = [(feeding.kernel, _with_seed(feeding.kernel_initializer, seed))]
        if getattr(feeding, "bias", None) is not None:
            fresh.append((feeding.bias, _with_seed(feeding.bias_initializer, seed + 1)))
        following = next((layer for layer in layers[index + 1:] if getattr(layer, "kernel", None) is not None), None)
        for variable, initializer in fresh:
            value = initializer(tuple(variable.shape), dtype=variable.dtype)
            # the model's output unit: a non-negative draw fires at once on a ReLU layer's outputs (torch's note)
            variable.assign(value if following is not None else np.abs(np.asarray(value)))
            for slot in _slots(optimizer, variable):
                _zero(slot)
        if following is not None and len(following.kernel.shape) >= 2 and int(following.kernel.shape[-2]) == units:
            # every unit was dead: all of the next layer's incoming weights are theirs
            for variable in (following.kernel, *_slots(optimizer, following.kernel)):
                _zero(variable)
        done["units"] += units
        done["layers"].append(name)
    if not done["not_applied"]:
        del done["not_applied"]
    return done


_SATURATING = ("tanh", "sigmoid")
_SATURATION = {"tanh": TANH_SATURATION, "sigmoid": SIGMOID_SATURATION}


def _feeding(layers: list[Any], name: str) -> tuple[Any, int, str | None, str]:
    """For the sigmoid/tanh layer ``name``: the layer holding the kernel that computes its pre-activations (itself,
    a ``Dense``/``Conv`` with ``activation="tanh"``, or the linear layer right before an ``Activation``), that
    layer's index, the activation's kind, and why not where there is none."""
    index = next((i for i, layer in enumerate(layers) if layer.name == name), None)
    kind = activation_kind(layers[index]) if index is not None else None
    if kind not in _SATURATING:
        return None, -1, None, f"{name}: no tanh/sigmoid layer of that name"
    if getattr(layers[index], "kernel", None) is not None:
        return layers[index], index, kind, ""
    before = layers[index - 1] if index >= 1 else None
    if before is None or getattr(before, "kernel", None) is None or activation_kind(before) is not None \
            or getattr(getattr(before, "activation", None), "__name__", "linear") != "linear":
        return None, -1, kind, f"{name}: no linear Dense/Conv layer right before this activation"
    return before, index - 1, kind, ""


def _zero_units(optimizer: Any, variable: Any, units: np.ndarray) -> None:
    """The optimizer's slots of ``variable`` (momentum, Adam's moments) set to 0 for the units (last axis)."""
    for slot in _slots(optimizer, variable):
        value = collect.to_numpy(slot).copy()
        value[..., units] = 0
        slot.assign(value)


def shrink_saturated_layers(model: Any, optimizer: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """LeCun et al. 1998 on Keras (``trainguard/core/policies/desaturate.py``, as the torch effector's
    ``shrink_saturated_units``): for each tanh/sigmoid layer named, each unit of the kernel that computes its
    pre-activations whose pre-activation can reach beyond the probe's saturation bound on inputs in [-1, 1]
    (``sum |w| + |b| > bound`` over its kernel column; the layer before it must itself be a tanh/sigmoid, so
    those inputs are bounded) gets its kernel column and bias multiplied by ``bound / (sum |w| + |b|)``, and the
    optimizer's slots of those units set to 0. The caller has made the variables writable (``before_write``)."""
    layers = [layer for layer in all_layers(model) if not hasattr(layer, "layers")]
    done: dict[str, Any] = {"units": 0, "layers": [], "not_applied": []}
    for name in names:
        feeding, at, kind, why = _feeding(layers, name)
        if feeding is None:
            done["not_applied"].append(why)
            continue
        if at < 1 or activation_kind(layers[at - 1]) not in _SATURATING:
            done["not_applied"].append(f"{name}: no Dense/Conv between two tanh/sigmoid layers before it (its "
                                       "inputs must be bounded to bound its pre-activations)")
            continue
        bound = _SATURATION[kind]
        kernel = collect.to_numpy(feeding.kernel)
        bias = collect.to_numpy(feeding.bias) if getattr(feeding, "bias", None) is not None else None
        reach = np.abs(kernel.reshape(-1, kernel.shape[-1])).sum(axis=0, dtype=np.float64)
        if bias is not None:
            reach = reach + np.abs(bias.astype(np.float64))
        units = np.flatnonzero(reach > bound)
        if units.size == 0:
            continue
        factor = bound / reach[units]
        kernel = kernel.copy()
        kernel[..., units] = kernel[..., units] * factor.astype(kernel.dtype)
        feeding.kernel.assign(kernel)
        _zero_units(optimizer, feeding.kernel, units)
        if bias is not None:
            bias = bias.copy()
            bias[units] = bias[units] * factor.astype(bias.dtype)
            feeding.bias.assign(bias)
            _zero_units(optimizer, feeding.bias, units)
        done["units"] += int(units.size)
        done["layers"].append(name)
    if not done["not_applied"]:
        del done["not_applied"]
    return done


def renormalize_on_batch(model: Any, optimizer: Any, names: tuple[str, ...], inputs: Any) -> dict[str, Any]:
    """Weight normalization's data-dependent initialization (Salimans & Kingma 2016, sec. 3; LSUV, Mishkin & Matas
    2016) on Keras (``trainguard/core/policies/renormalize.py``, as the torch effector's
    ``renormalize_next_batch``), once, on the ``Dense`` layer that computes each hidden sigmoid/tanh layer's
    pre-activations: one inference pass over ``inputs`` (the last training batch) in which each such layer, when
    called, divides each unit's kernel column by the standard deviation of its pre-activations over the batch,
    shifts its bias by their mean (mean 0, variance 1), sets the optimizer's slots of the layer to 0, and hands the
    layer above its output recomputed with the new weights: the layers are normalized in forward order, each on
    what the ones below now give. A batch of one sample, a unit constant over the batch or a non-finite
    pre-activation leave that layer as it is. The caller has made the variables writable (``before_write``)."""
    layers = [layer for layer in all_layers(model) if not hasattr(layer, "layers")]
    done: dict[str, Any] = {"units": 0, "layers": [], "not_applied": []}
    targets: dict[int, tuple[str, Any]] = {}
    for name in names:
        feeding, _, _, why = _feeding(layers, name)
        if feeding is not None and not isinstance(feeding, keras.layers.Dense):
            feeding, why = None, f"{name}: its pre-activations come from a {type(feeding).__name__}, not a Dense layer"
        if feeding is None:
            done["not_applied"].append(why)
        else:
            targets[id(feeding)] = (name, feeding)
    if inputs is None and targets:
        done["not_applied"].append("no training batch is held on the host (a custom loop hands it over with "
                                   "inputs=; a TensorFlow step under XLA, or with several input tensors, keeps it "
                                   "in the graph)")
        targets = {}
    normalized: list[str] = []

    def make(name: str, layer: Any) -> Callable[[Callable], Callable]:
        def wrap(original: Callable) -> Callable:
            def call(x, *args, **kwargs):
                z = collect.to_numpy(x).astype(np.float64) @ collect.to_numpy(layer.kernel).astype(np.float64)
                if layer.bias is not None:
                    z = z + collect.to_numpy(layer.bias)
                z = z.reshape(-1, z.shape[-1])
                if z.shape[0] >= 2 and np.all(np.isfinite(z)) and name not in normalized:
                    mean, std = z.mean(axis=0), z.std(axis=0, ddof=1)
                    moved = std > 0
                    scale = np.where(moved, 1.0 / np.maximum(std, 1e-30), 1.0)
                    kernel = collect.to_numpy(layer.kernel)
                    layer.kernel.assign((kernel * scale).astype(kernel.dtype))
                    for slot in _slots(optimizer, layer.kernel):
                        _zero(slot)
                    if layer.bias is not None:
                        bias = collect.to_numpy(layer.bias)
                        layer.bias.assign(((bias - np.where(moved, mean, 0.0)) * scale).astype(bias.dtype))
                        for slot in _slots(optimizer, layer.bias):
                            _zero(slot)
                    normalized.append(name)
                return original(x, *args, **kwargs)
            return call
        return wrap

    restore = [wrap_call(layer, make(name, layer)) for name, layer in targets.values()]
    try:
        if restore:
            model(inputs, training=False)
    finally:
        for undo in reversed(restore):
            undo()
    for name, layer in targets.values():
        if name in normalized:
            done["units"] += int(layer.kernel.shape[-1])
            done["layers"].append(name)
        else:
            done["not_applied"].append(f"{name}: its pre-activations were not finite, or the batch had one sample")
    if not done["not_applied"]:
        del done["not_applied"]
    return done
