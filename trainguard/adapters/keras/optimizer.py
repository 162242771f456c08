"""``GuardedOptimizer``: a Keras optimizer that wraps the user's optimizer to see and steer every update.

A Keras callback never sees gradients, so the guard wraps ``model.optimizer`` the way
``keras.optimizers.LossScaleOptimizer`` does: it overrides ``apply`` (torch and TensorFlow backends, also the
user's custom loops) and ``stateless_apply`` (JAX, inside ``jit``), measures the raw gradients, carries out the
standing repair orders in the graph, and hands the gradients to the inner optimizer.

What happens at each update, on every backend:

1. The norm of each gradient tensor is taken; their root sum of squares is the global norm. Both are the
   **raw** values, before any clipping: the user's own ``clipnorm``/``clipvalue``/``global_clipnorm`` still
   applies inside the inner optimizer, after ours.
2. The update is skipped (the inner optimizer and its state untouched, as ``LossScaleOptimizer`` does) when a
   standing order says so: a non-finite gradient or loss under ``skip_non_finite``, a norm above ``skip_above``,
   or a batch inside a rollback's skip window.
3. Otherwise the gradients are rescaled to at most ``clip_norm`` and the inner optimizer steps, with its learning
   rate multiplied by ``lr_scale`` for this step only.

An eager update (the torch backend, custom loops) takes one fused norm pass and one small host read (the loss
and the norms), decides on those numbers (:mod:`~trainguard.adapters.keras.decision`, the one decision of every
path) and queues its measurements for the host side (:mod:`trainguard.adapters.keras.session`). A compiled update (a TensorFlow graph, JAX) decides with ``ops.cond``: the orders
live in optimizer variables (``tg_*``) that the step reads as state and the host side changes between steps, and
the measurements are written back into variables, which the host reads after the step.

Saving: the wrapper saves exactly the inner optimizer's variables, under the inner optimizer's layout, so a model
saved while wrapped (``ModelCheckpoint`` mid-fit) loads into a plain model; ``get_config`` serializes the inner
optimizer, and the class is registered so a model compiled with a ``GuardedOptimizer`` also loads.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any

import keras
import numpy as np
from keras import ops

from trainguard.adapters.keras import collect, graph, loop, private
from trainguard.adapters.keras.decision import HOST, Decision, decide
from trainguard.adapters.keras.records import HostSide, Orders, StepRecord
from trainguard.core.validation import validation_record

__all__ = ["GuardedOptimizer"]


@keras.saving.register_keras_serializable(package="trainguard")
class GuardedOptimizer(keras.optimizers.Optimizer):
    """Wraps ``inner_optimizer``; every attribute a training loop reads (learning rate, iterations, variables)
    is the inner optimizer's.

    In a custom training loop, use it in place of the optimizer and pass the loss::

        opt = trainguard.keras.GuardedOptimizer(keras.optimizers.Adam(1e-3), policy="safe", log="runs/x.jsonl",
                                                model=model)
        opt.apply(grads, model.trainable_variables, loss=loss)   # or opt.apply_gradients(zip(grads, vars), loss=loss)
        opt.findings, opt.diagnose(), opt.close()

    ``model`` is optional; with it the guard also checks the BatchNormalization / Dropout modes and the weights.
    """

    def __init__(self, inner_optimizer: keras.optimizers.Optimizer, policy: Any = "safe", log: str | None = None,
                 preset: str = "standard", model: keras.Model | None = None, name: str | None = None, *,
                 detectors: Any = None, exporters: Any = (), **kwargs: Any):
        if not isinstance(inner_optimizer, keras.optimizers.Optimizer):
            raise TypeError(f"GuardedOptimizer wraps a keras.optimizers.Optimizer, got {type(inner_optimizer).__name__}")
        if isinstance(inner_optimizer, GuardedOptimizer):
            raise TypeError("this optimizer is already guarded")
        if kwargs:
            raise ValueError(f"GuardedOptimizer does not take {', '.join(kwargs)}; set them on the inner optimizer")
        exporters = loop.check_arguments(policy, log, preset, detectors, exporters)
        super().__init__(learning_rate=0.0, name=name or f"guarded_{inner_optimizer.name}")
        self.inner_optimizer = inner_optimizer
        self.orders = Orders()
        # Custom loops: the optimizer creates its own session on the first update. Under fit the callback
        # makes the wrapper with session_args None and drives the session itself.
        self.host = HostSide(session_args=dict(policy=policy, log=log, preset=preset, model=model,
                                               detectors=detectors, exporters=exporters))
        self._policy_config = policy if isinstance(policy, str) else None
        self._preset_config = preset
        if model is not None and getattr(model, "built", False):
            # Start watching now, so the first training step's forward pass is seen too (layer modes).
            self.build(model.trainable_variables)
            loop.run_session(self, None, drain=False)

    # ----------------------------------------------------------------- variables
    def build(self, var_list):
        if self.built:
            return
        n = len(var_list)
        add = self.add_variable
        orders = self.orders

        def knob(name, value):
            return add((), initializer=keras.initializers.Constant(float(value)), dtype="float32",
                       aggregation="none", name=name)

        self.tg_skip_non_finite = knob("tg_skip_non_finite", orders.skip_non_finite)
        self.tg_skip_above = knob("tg_skip_above", orders.skip_above)
        self.tg_clip_norm = knob("tg_clip_norm", orders.clip_norm)
        self.tg_lr_scale = knob("tg_lr_scale", orders.lr_scale)
        self.tg_skip_next = knob("tg_skip_next", orders.skip_next)
        self.tg_grad_norms = add((max(n, 1),), initializer="zeros", dtype="float32", aggregation="none",
                                 name="tg_grad_norms")
        self.tg_loss = add((), initializer="zeros", dtype="float32", aggregation="none", name="tg_loss")
        self.tg_skipped = add((), initializer="zeros", dtype="float32", aggregation="none", name="tg_skipped")
        self.tg_clipped = add((), initializer="zeros", dtype="float32", aggregation="none", name="tg_clipped")
        self.tg_updates = add((), initializer="zeros", dtype="float32", aggregation="none", name="tg_updates")
        # Sampled steps of a TensorFlow graph step: per-tensor mean |g|, zero fraction, Adam update RMS.
        self.tg_sample = knob("tg_sample", self.host.keep_grads)
        self.tg_grad_stats = add((3, max(n, 1)), initializer="zeros", dtype="float32", aggregation="none",
                                 name="tg_grad_stats")
        if not self.inner_optimizer.built:
            self.inner_optimizer.build(var_list)
        super().build(var_list)

    @property
    def variables(self):
        return self._variables + self.inner_optimizer.variables

    def own_index(self, variable) -> int:
        """Position of one of the wrapper's own variables in ``self.variables`` (by identity: Keras
        variables compare element-wise)."""
        return next(i for i, v in enumerate(self._variables) if v is variable)

    def save_own_variables(self, store):
        # The inner optimizer's layout: a model saved while guarded loads into a plain model.
        self.inner_optimizer.save_own_variables(store)

    def load_own_variables(self, store):
        self.inner_optimizer.load_own_variables(store)

    def __dir__(self):
        # Keras' saver walks attributes: the inner optimizer is saved through save_own_variables, not twice.
        return [a for a in super().__dir__() if a not in ("inner_optimizer", "host")]

    # ----------------------------------------------------------------- what training loops read
    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self.inner_optimizer.learning_rate = value

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    def scale_loss(self, loss):
        # Keras' train_step passes the batch loss through here before the backward pass: keep it (a symbolic
        # one too inside a TensorFlow graph step, where apply uses it in the same trace).
        if _is_eager(loss) or graph.in_graph():
            self.host.loss = ops.stop_gradient(loss)
        return self.inner_optimizer.scale_loss(loss)

    # ----------------------------------------------------------------- orders
    def set_orders(self, orders: Orders, force: bool = False) -> None:
        """Writes the standing orders into the variables (the host side calls this between steps); only the
        changed ones, or all with ``force`` (a compiled step counts ``skip_next`` down in its state alone)."""
        if not self.built:
            self.orders = orders
            return
        old = self.orders
        for name, var in (("skip_non_finite", self.tg_skip_non_finite), ("skip_above", self.tg_skip_above),
                           ("clip_norm", self.tg_clip_norm), ("lr_scale", self.tg_lr_scale),
                           ("skip_next", self.tg_skip_next)):
            value = getattr(orders, name)
            if force or value != getattr(old, name):
                var.assign(float(value))
        self.orders = orders

    # ----------------------------------------------------------------- the update
    def apply_gradients(self, grads_and_vars, loss=None, batch_size: int | None = None, *, inputs=None,
                        targets=None):
        grads, variables = zip(*grads_and_vars)
        self.apply(list(grads), list(variables), loss=loss, batch_size=batch_size, inputs=inputs, targets=targets)
        return self.iterations

    def apply(self, grads, trainable_variables=None, *, loss=None, batch_size: int | None = None, inputs=None,
              targets=None):
        """Applies one update. Custom loops pass the batch's ``loss`` (and optionally its ``inputs``/``targets``,
        for the batch size and the data-scale check of the first batches)."""
        if not self.built:
            with keras.name_scope(self.name, caller=self):
                self.build(trainable_variables if trainable_variables is not None else [])
            self.built = True
        if self.host.session is None and self.host.session_args is not None:
            # Its standing orders hold from this first update on. Made on the host even when this first update
            # is being traced into a tf.function (init_scope: eagerly, outside the graph).
            with _outside_graph():
                loop.run_session(self, None, drain=False)
        grads = list(grads)
        variables = list(trainable_variables) if trainable_variables is not None else self._trainable_variables
        host = self.host
        if loss is not None:
            host.loss = ops.stop_gradient(ops.convert_to_tensor(loss))
        if _is_eager(*[g for g in grads if g is not None]):
            self._apply_eager(grads, variables, trainable_variables)
            loop.run_session(self, batch_size, inputs, targets)
            return
        host.eager = False
        norms, total = self._measure(grads)
        decision = self._decide_in_graph(total)
        clipped, new_grads = self._clip(grads, decision)

        def step():
            self._inner_apply(new_grads, trainable_variables, eager=False)

        ops.cond(decision.skip, lambda: None, step)
        if graph.in_graph():
            self._graph_gradient_stats(grads, variables)
        self.tg_grad_norms.assign(self._scatter(norms, variables))
        self.tg_skipped.assign(ops.cast(decision.recorded_skip, "float32"))
        self.tg_clipped.assign(ops.cast(clipped, "float32"))
        self.tg_skip_next.assign(ops.maximum(self.tg_skip_next - 1.0, 0.0))
        self.tg_updates.assign_add(1.0)
        if host.loss is not None:
            self.tg_loss.assign(ops.cast(ops.reshape(host.loss, ()), "float32"))
            host.loss, host.loss_in_graph = None, True
        session = host.session
        if session is not None and session.owned_by_optimizer and graph.in_graph():
            # A custom loop's own tf.function: nothing on the host runs between its steps, so the step hands
            # control to the host once, after its update (as an eager update reads its numbers once).
            # Not under XLA, where no host callback runs: the standing orders still act there.
            if inputs is not None or targets is not None:
                session.graph_batch.record(inputs, targets)
            if not private.in_xla_context():
                import tensorflow as tf

                tf.py_function(self._host_step, [], [])

    def keep_gradients(self, keep: bool) -> None:
        """The guard samples the next update per layer: an eager one keeps its raw gradients, a graph one
        measures their statistics in the graph."""
        if keep != self.host.keep_grads and self.built:
            self.tg_sample.assign(1.0 if keep else 0.0)
        self.host.keep_grads = keep

    def _graph_gradient_stats(self, grads, variables) -> None:
        """Inside a TensorFlow graph step, on sampled steps only: per-tensor mean |g|, fraction of exact zeros and
        Adam's update RMS (Wortsman et al. 2023: RMS of g / max(sqrt(v_hat), eps), v_hat read after the update as
        the host does), written into ``tg_grad_stats``; NaN where there is no gradient or no Adam."""
        n = int(self.tg_grad_stats.shape[1])
        inner = self.inner_optimizer
        velocities, beta_2 = private.velocities(inner), getattr(inner, "beta_2", None)
        epsilon = float(getattr(inner, "epsilon", 1e-7) or 1e-7)

        def write():
            nan = ops.full((), math.nan, "float32")
            rows = [[nan] * n for _ in range(3)]
            correction = None
            if velocities and beta_2 is not None:
                steps = ops.maximum(ops.cast(private.iterations_variable(inner), "float32"), 1.0)
                correction = 1.0 - ops.power(ops.cast(beta_2, "float32"), steps)
            for g, v in zip(grads, variables):
                if g is None:
                    continue
                i = self._get_variable_index(v)
                g = ops.cast(g, "float32")
                rows[0][i] = ops.mean(ops.abs(g))
                rows[1][i] = ops.mean(ops.cast(ops.equal(g, 0.0), "float32"))
                if correction is not None and velocities[i] is not None:
                    sqrt_v = ops.sqrt(ops.maximum(ops.cast(velocities[i], "float32") / correction, 0.0))
                    rows[2][i] = ops.sqrt(ops.mean(ops.square(g / ops.maximum(sqrt_v, epsilon))))
            self.tg_grad_stats.assign(ops.stack([ops.stack(row) for row in rows]))
            return ops.convert_to_tensor(True)

        ops.cond(self.tg_sample > 0.5, write, lambda: ops.convert_to_tensor(False))
        self.host.grad_stats_in_graph = True

    def _host_step(self) -> None:
        """Inside a custom loop's tf.function, after each update (``tf.py_function``, eager): the records."""
        session = self.host.session
        session.see_measured_batch()
        session.drain(read_graph=self.read_record)

    def read_record(self, read=collect.to_numpy) -> StepRecord:
        """The last compiled update's measurements, from the wrapper's variables (``read`` reads one: from the
        JAX trainer's state during fit)."""
        loss = read(self.tg_loss) if self.host.loss_in_graph else None
        grad_stats = None
        if self.host.grad_stats_in_graph and self.host.keep_grads:
            grad_stats = tuple(np.asarray(read(self.tg_grad_stats), dtype=np.float64))
        return StepRecord(loss=loss, grad_norms=read(self.tg_grad_norms), skipped=read(self.tg_skipped) > 0.5,
                          clipped=read(self.tg_clipped) > 0.5, grads=None, index=int(read(self.tg_updates)) - 1,
                          grad_stats=grad_stats)

    def _apply_eager(self, grads, variables, trainable_variables) -> None:
        """An eager update (torch backend, custom loops): one fused norm pass and one small host read, then the
        decision (:mod:`~trainguard.adapters.keras.decision`) on those host numbers."""
        host, orders = self.host, self.orders
        host.eager = True
        present = [g for g in grads if g is not None]
        values = collect.to_numpy(_step_vector(host.loss, present)).astype(np.float64)
        loss = float(values[0]) if host.loss is not None else None
        norms = np.zeros(len(self._trainable_variables))
        index = [self._get_variable_index(v) for v, g in zip(variables, grads) if g is not None]
        norms[index] = values[1:]
        scaled = self._loss_scaled()
        if scaled:
            norms /= float(collect.to_numpy(self.inner_optimizer.dynamic_scale))
        with np.errstate(over="ignore", invalid="ignore"):
            total = float(np.sqrt(np.sum(np.square(norms))))
        decision = decide(HOST, skip_non_finite=orders.skip_non_finite, skip_above=orders.skip_above,
                          clip_norm=orders.clip_norm, in_skip_window=orders.skip_next > 0, total=total,
                          loss_finite=loss is None or math.isfinite(loss), loss_scaled=scaled)
        skipped = decision.recorded_skip
        if not skipped:
            new_grads = grads
            if decision.scale != 1.0:
                new_grads = [None if g is None else g * decision.scale for g in new_grads]
            if math.isfinite(orders.clip_value):
                v = orders.clip_value
                new_grads = [None if g is None else ops.clip(g, -v, v) for g in new_grads]
            self._inner_apply(new_grads, trainable_variables, eager=True)
        host.pending.append(StepRecord(loss, norms, skipped, decision.clipped and not skipped,
                                       grads if host.keep_grads else None))
        host.loss = None
        if orders.skip_next > 0:
            self.orders = orders._replace(skip_next=orders.skip_next - 1)
            self.tg_skip_next.assign(float(self.orders.skip_next))

    def _measure(self, grads):
        """Raw per-tensor norms and the global norm, unscaled when the inner optimizer scales the loss."""
        sq = [ops.sum(ops.square(ops.cast(g, "float32"))) for g in grads if g is not None]
        if not sq:
            zero = ops.zeros((), "float32")
            return ops.zeros((0,), "float32"), zero
        sq = ops.stack(sq)
        norms, total = ops.sqrt(sq), ops.sqrt(ops.sum(sq))
        if self._loss_scaled():
            scale = ops.cast(self.inner_optimizer.dynamic_scale, "float32")
            norms, total = norms / scale, total / scale
        return norms, total

    def _loss_scaled(self) -> bool:
        """Whether the inner optimizer is a ``LossScaleOptimizer`` (mixed precision): the gradients it receives
        are multiplied by its dynamic scale."""
        return isinstance(self.inner_optimizer, keras.optimizers.LossScaleOptimizer)

    def _scatter(self, norms, variables):
        """Per-variable norms in the order the optimizer was built with (0 where a gradient was None)."""
        n = int(self.tg_grad_norms.shape[0])
        if len(variables) == n and norms.shape[0] == n:
            return norms
        index = [self._get_variable_index(v) for v in variables]
        values = [ops.zeros((), "float32")] * n
        k = 0
        for i in index:
            if k < norms.shape[0]:
                values[i] = norms[k]
                k += 1
        return ops.stack(values)

    def _decide_in_graph(self, total) -> Decision:
        """The decision on tensors: the orders are read from the wrapper's variables (state under JAX)."""
        loss_finite = True
        if self.host.loss is not None:
            loss_finite = ops.all(ops.isfinite(self.host.loss))
        return decide(ops, skip_non_finite=self.tg_skip_non_finite > 0.5, skip_above=self.tg_skip_above,
                      clip_norm=self.tg_clip_norm, in_skip_window=self.tg_skip_next > 0.5, total=total,
                      loss_finite=loss_finite, loss_scaled=self._loss_scaled())

    def _clip(self, grads, decision: Decision):
        """Global-norm clipping to ``clip_norm`` (Pascanu et al. 2013) and clamping to ``clip_value``."""
        clipped = decision.clipped
        out = [None if g is None else g * ops.cast(decision.scale, g.dtype) for g in grads]
        if math.isfinite(self.orders.clip_value):
            v = self.orders.clip_value
            out = [None if g is None else ops.clip(g, -v, v) for g in out]
            clipped = ops.logical_or(clipped, ops.any(ops.stack(
                [ops.max(ops.abs(g)) > v for g in grads if g is not None])))
        return clipped, out

    def _inner_apply(self, grads, trainable_variables, eager: bool):
        inner = self.inner_optimizer
        scaled = self._before_scaled_update(trainable_variables) if eager and self.orders.update_scale else ()
        if eager and self.orders.lr_scale == 1.0:
            inner.apply(grads, trainable_variables)
        else:  # scale the learning rate of this update only
            with private.scaled_learning_rate(inner, self.orders.lr_scale if eager else self.tg_lr_scale):
                inner.apply(grads, trainable_variables)
        for variable, before, factor in scaled:  # a reparametrized variable: W' = W / s moves s times as far in W
            variable.assign(before + (variable.value - before) * factor)

    def _before_scaled_update(self, trainable_variables) -> list:
        """The variables whose update the ``update_scale`` order multiplies, each with a copy of its value."""
        factors = dict(self.orders.update_scale)
        variables = trainable_variables if trainable_variables is not None else self._trainable_variables
        return [(v, ops.copy(v.value), factors[v.path]) for v in variables if v.path in factors]

    # ----------------------------------------------------------------- JAX
    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        """The functional update of the JAX trainer: the same rules, written with ``ops.cond``."""
        own = len(self._variables)
        mapping = list(zip(self.variables, optimizer_variables))
        with keras.StatelessScope(state_mapping=mapping):
            self.host.loss, self.host.eager = None, False
            norms, total = self._measure(grads)
            decision = self._decide_in_graph(total)
            clipped, new_grads = self._clip(grads, decision)
            norms_full = self._scatter(norms, self._trainable_variables)
            skip_next = ops.maximum(self.tg_skip_next - 1.0, 0.0)
            updates = self.tg_updates + 1.0
        inner_vars = list(optimizer_variables[own:])

        def apply_inner():
            lr_scale = optimizer_variables[self.own_index(self.tg_lr_scale)]
            with private.scaled_learning_rate(self.inner_optimizer, lr_scale):
                new_tv, new_inner = self.inner_optimizer.stateless_apply(inner_vars, new_grads,
                                                                         trainable_variables)
            return list(new_tv), list(new_inner)

        def keep():
            return list(trainable_variables), inner_vars

        new_tv, new_inner = ops.cond(decision.skip, keep, apply_inner)
        own_values = list(optimizer_variables[:own])
        recorded_skip = ops.cast(decision.recorded_skip, "float32")
        for var, value in ((self.tg_grad_norms, norms_full), (self.tg_skipped, recorded_skip),
                           (self.tg_clipped, ops.cast(clipped, "float32")), (self.tg_skip_next, skip_next),
                           (self.tg_updates, updates)):
            own_values[self.own_index(var)] = value
        state = own_values + new_inner
        self.host.traced_state = state
        return new_tv, state

    # ----------------------------------------------------------------- custom loops: the results
    @property
    def findings(self):
        return [] if self.host.session is None else self.host.session.findings

    @property
    def actions(self):
        return [] if self.host.session is None else self.host.session.actions

    def diagnose(self):
        return [] if self.host.session is None else self.host.session.diagnose()

    def record_validation(self, loss=None, *, epoch: int | None = None, **metrics):
        """A custom loop's evaluation on held-out data, after the steps applied so far: ``loss`` and metrics by
        name (numbers or scalar tensors), e.g. ``optimizer.record_validation(val_loss, accuracy=val_acc)``. It
        goes to the run log and the overfitting detector, whose findings it returns (none before the first step)."""
        session = self.host.session
        record = validation_record(0 if session is None else session.step, loss, metrics, epoch=epoch)
        return () if session is None else session.session.validate(record)

    def close(self, status: str = "ok") -> None:
        if self.host.session is not None:
            self.host.session.close(status)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close("ok" if exc_type is None else "error")

    # ----------------------------------------------------------------- serialization
    def get_config(self):
        return {
            "name": self.name,
            "inner_optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
            "policy": self._policy_config,
            "preset": self._preset_config,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        inner = keras.saving.deserialize_keras_object(config.pop("inner_optimizer"), custom_objects=custom_objects)
        return cls(inner, **config)


def _step_vector(loss, grads):
    """``[loss, ||g_1||, ..., ||g_n||]`` as one float32 vector (the loss slot is 0 when there is none): one
    fused pass on torch (``torch._foreach_norm``, as ``clip_grad_norm_`` does), ``keras.ops`` elsewhere."""
    loss_part = ops.zeros((1,), "float32") if loss is None else ops.reshape(ops.cast(loss, "float32"), (1,))
    if not grads:
        return loss_part
    if keras.backend.backend() == "torch":
        import torch

        norms = [n.float() for n in torch._foreach_norm(list(grads))]
        device = norms[0].device
        return torch.cat([loss_part.to(device), torch.stack([n.to(device) for n in norms])])
    norms = [ops.sqrt(ops.sum(ops.square(ops.cast(g, "float32")))) for g in grads]
    return ops.concatenate([loss_part, ops.stack(norms)])


def _outside_graph():
    """A context that runs its body eagerly even while a TensorFlow graph is traced (``tf.init_scope``)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.init_scope()
    return contextlib.nullcontext()


def _is_eager(*tensors) -> bool:
    """Whether the update runs eagerly (values can be kept as tensors), not inside a traced/compiled function."""
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        return not torch.compiler.is_compiling()
    if backend == "jax":
        import jax

        return not any(isinstance(t, jax.core.Tracer) for t in tensors)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly()
    return False
