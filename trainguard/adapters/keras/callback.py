"""``Guard``: the Keras callback. ``model.fit(x, y, callbacks=[Guard(policy="auto", log="runs/exp.jsonl")])``.

At ``on_train_begin`` it wraps ``model.optimizer`` in a :class:`GuardedOptimizer` (built on the model's
trainable variables), wraps ``model.train_step`` to see each batch's size and the scale of the first batches'
data, and records the ``training`` argument of BatchNormalization/Dropout calls. After each batch it feeds the
wrapper's measurements through the core (:class:`KerasSession`); after each epoch, its validation (``val_loss``,
``val_accuracy``...) as a validation result (run log, overfitting detector). At ``on_train_end`` everything is put back:
``model.optimizer`` is the user's optimizer again, with the state the run gave it.

Under the torch backend every update runs eagerly and is seen as it happens (the backend allows only
``steps_per_execution=1``). Under TensorFlow (a ``tf.function``, XLA with ``jit_compile=True``) and JAX the step
is compiled: what it measures is written into variables inside the step (graph.py for TensorFlow's batch and
activations), which the guard reads after each call of the train function (from the trainer's state under JAX),
so with ``steps_per_execution=k`` it sees every k-th update. The train function is traced again for the guarded
fit and after it, since a traced function keeps the optimizer it was traced with.

Containment: if the guard cannot set itself up (an optimizer it cannot wrap), it warns once and the run goes on
unguarded; failures later on are contained by the session.
"""
from __future__ import annotations

import warnings
from typing import Any

import keras
import numpy as np

from trainguard.adapters.keras import collect, graph, loop, private
from trainguard.adapters.keras.optimizer import GuardedOptimizer
from trainguard.adapters.keras.records import StepRecord
from trainguard.adapters.keras.session import KerasSession
from trainguard.core.detector import Detector
from trainguard.core.presets import Preset, get_preset
from trainguard.core.validation import Validation, held_out_results

__all__ = ["Guard"]


class Guard(keras.callbacks.Callback):
    """Watches (and with a repair policy, repairs) ``model.fit``.

    Args:
        policy: ``"observe"`` (measure, detect, log; touch nothing), ``"safe"`` (default: skip non-finite and
            outlier steps, clip outlier gradients) or ``"auto"`` (``safe`` plus clip -> LR back-off -> rollback
            -> stop), or a policy built with ``trainguard.core.policies.chain``.
        log: path of a JSONL run log to append to (``trainguard report PATH`` reads it), or None.
        preset: the statistics budget (``"economy"``, ``"standard"``, ``"full"``, ``"forensic"``).
        detectors: a core ``Detector`` in place of the default set.
        exporters: callables receiving each recorded StepStats, Finding and Action (``trainguard.exports``).

    After training: ``guard.findings``, ``guard.actions``, ``guard.diagnose()``.
    """

    def __init__(self, policy: Any = "safe", log: str | None = None, preset: str | Preset = "standard",
                 detectors: Detector | None = None, exporters: Any = ()):
        super().__init__()
        # Bad arguments fail here, each with a one-line message, not mid-fit.
        self.exporters = loop.check_arguments(policy, log, preset, detectors, exporters)
        self.policy = policy
        self.log_path = log
        self.preset = get_preset(preset)
        self.detectors = detectors
        self.session: KerasSession | None = None
        self._wrapper: GuardedOptimizer | None = None
        self._original_optimizer = None
        self._epoch_loss: tuple[int, float] | None = None

    # ----------------------------------------------------------------- results
    @property
    def findings(self):
        return [] if self.session is None else self.session.findings

    @property
    def actions(self):
        return [] if self.session is None else self.session.actions

    @property
    def history(self):
        return [] if self.session is None else list(self.session.history)

    def diagnose(self):
        """Ranked root causes (``trainguard.core.diagnosis.Cause``), fixes in Keras; [] for a healthy run."""
        return [] if self.session is None else self.session.diagnose()

    # ----------------------------------------------------------------- hooks
    def on_train_begin(self, logs=None):
        if getattr(self.model, "optimizer", None) is None:
            raise ValueError("trainguard.keras.Guard needs a compiled model (model.compile(optimizer=...))")
        self.session = None
        try:
            self._start()
        except ValueError:  # the user's input (a run log that cannot be opened): said in one line
            self._undo_start()
            raise
        except Exception as e:  # noqa: BLE001 - containment: the run goes on unguarded
            self._undo_start()
            warnings.warn(f"trainguard: the Keras guard could not start ({type(e).__name__}: {e}); "
                          "training continues unguarded", RuntimeWarning, stacklevel=2)

    def _undo_start(self) -> None:
        self._unpatch_train_step()
        if self._original_optimizer is not None and self.model.optimizer is self._wrapper:
            self.model.optimizer = self._original_optimizer
        if self.session is not None:
            self.session.close("error")
        self.session = None
        if _compiled_backend():  # fit already holds a train function: make it again, unguarded
            self.model.make_train_function(force=True)

    def _start(self) -> None:
        model = self.model
        optimizer = model.optimizer
        self._wrapper = self._original_optimizer = None
        if isinstance(optimizer, GuardedOptimizer) and optimizer.host.made_by_guard:
            # Left wrapped by a fit that ended in an exception (Keras then skips on_train_end): unwrap it.
            if optimizer.host.session is not None:
                optimizer.host.session.close("interrupted")
            self._unpatch_train_step()
            optimizer = model.optimizer = optimizer.inner_optimizer
        if isinstance(optimizer, GuardedOptimizer):
            wrapper = optimizer  # compiled with a GuardedOptimizer: the callback drives it
            self._original_optimizer = None
        else:
            wrapper = GuardedOptimizer(optimizer)
            wrapper.host.made_by_guard = True
            self._original_optimizer = optimizer
        wrapper.host.session_args = None
        wrapper.host.loss_in_graph = wrapper.host.grad_stats_in_graph = False
        if wrapper.host.session is not None:  # the optimizer watched itself so far: the callback takes over
            wrapper.host.session.close()
        wrapper.build(model.trainable_variables)
        wrapper.built = True
        if self._original_optimizer is not None:
            model.optimizer = wrapper
        self._wrapper = wrapper
        self.session = KerasSession(wrapper, self.policy, self.log_path, self.preset, model,
                                    owned_by_optimizer=False, detectors=self.detectors, exporters=self.exporters,
                                    stop=self._stop)
        wrapper.host.session = self.session
        if keras.backend.backend() == "jax":
            self.session.before_host_write = self._jax_sync
            self.session.read = self._jax_reader()
            self.session.probe_forward = self._jax_probe_forward
        self._patch_train_step()

    def on_epoch_begin(self, epoch, logs=None):
        if self.session is not None:
            self.session.epoch = epoch
        self._epoch_loss = None

    def on_epoch_end(self, epoch, logs=None):
        """The epoch's validation (``val_loss`` and ``val_<metric>`` in its logs) as a validation result."""
        if self.session is None or not logs:
            return
        loss, values = held_out_results(logs, ("val_",))
        if loss is not None or values:
            self.session.session.validate(Validation(self.session.step, loss, values, epoch=epoch))

    def on_test_begin(self, logs=None):
        if self.session is not None:
            self.session.pause_probes()

    def on_test_end(self, logs=None):
        if self.session is not None:
            self.session.resume_probes()

    def on_train_batch_end(self, batch, logs=None):
        if self.session is None:
            return
        try:
            logs_loss = self._batch_loss(batch, logs)
        except (TypeError, ValueError):  # a loss Keras reports in a shape we do not know: not recorded
            logs_loss = None
        self.session.see_measured_batch()
        self.session.drain(logs_loss=logs_loss, read_graph=self._read_graph)

    def on_train_end(self, logs=None):
        self._unpatch_train_step()
        if _compiled_backend():
            self.model.train_function = None  # traced with the wrapper: the next fit traces its own
        if self._original_optimizer is not None and self.model.optimizer is self._wrapper:
            self.model.optimizer = self._original_optimizer
        if self.session is not None:
            self.session.close("stopped" if self.session.stop_reason else "ok")

    # ----------------------------------------------------------------- helpers
    def _stop(self, reason: str) -> None:
        self.model.stop_training = True

    def _batch_loss(self, batch: int, logs: dict | None) -> float | None:
        """This batch's loss from Keras' running epoch mean (used when the wrapper could not keep it)."""
        if not logs or "loss" not in logs:
            return None
        mean = float(np.asarray(logs["loss"]))
        previous, self._epoch_loss = self._epoch_loss, (batch, mean)
        if previous is None:
            return mean if batch == 0 else None
        k, prev_mean = previous
        if batch != k + 1:
            return None
        loss = (batch + 1) * mean - (k + 1) * prev_mean
        # The float32 mean carries ~1e-7 relative error, multiplied by the batch count: after a huge loss
        # earlier in the epoch the difference is noise, so it is not reported.
        if abs(loss) < 1e-5 * (batch + 1) * abs(mean):
            return None
        return loss

    def _patch_train_step(self) -> None:
        model, session = self.model, self.session
        if keras.backend.backend() == "jax":
            # The JAX step is traced once: a Python wrapper would see tracers, not batches.
            self._patch_jax_loss()
            return
        original = model.train_step

        def train_step(data, *args, **kwargs):
            x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
            if session.graph_batch is not None and graph.in_graph():  # TensorFlow's traced step: measured there
                session.graph_batch.record(x, y)
            else:
                session.see_batch(x, y)
            return original(data, *args, **kwargs)

        train_step._trainguard = True
        object.__setattr__(model, "train_step", train_step)
        if keras.backend.backend() == "tensorflow":
            # fit made its train function before on_train_begin, and a tf.function keeps the optimizer it was
            # first traced with: make it again, so the step is traced through the wrapper (and this fit's one).
            model.make_train_function(force=True)

    def _patch_jax_loss(self) -> None:
        """JAX: the compiled step never hands the batch loss to the optimizer. Keras' JAX trainer passes it to
        ``_update_metrics_variables`` after ``stateless_apply`` in the same trace; there it is written into the
        wrapper's ``tg_loss`` slot of the optimizer state the step returns. Without that method (another Keras
        version) the loss is recovered from the running epoch mean instead."""
        model, wrapper = self.model, self._wrapper
        original = getattr(model, private.METRICS_UPDATE, None)
        if original is None:
            return
        slot = wrapper.own_index(wrapper.tg_loss)

        def update_metrics_variables(metrics_variables, unscaled_loss, *args, **kwargs):
            state = wrapper.host.traced_state
            if state is not None:
                state[slot] = keras.ops.cast(keras.ops.reshape(unscaled_loss, ()), "float32")
                wrapper.host.traced_state = None
                wrapper.host.loss_in_graph = True
            return original(metrics_variables, unscaled_loss, *args, **kwargs)

        update_metrics_variables._trainguard = True
        object.__setattr__(model, private.METRICS_UPDATE, update_metrics_variables)
        # The train function binds train_step when it is made (before on_train_begin): make it again so the
        # traced step goes through the patched methods and the wrapper.
        model.make_train_function(force=True)
        # It takes an iterator of host batches: peek at them for the batch size and the data's scale.
        step_function, session = model.train_function, self.session

        def peek(iterator):
            for data in iterator:
                x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
                session.see_batch(x, y)
                yield data

        model.train_function = lambda state, iterator: step_function(state, peek(iterator))

    def _unpatch_train_step(self) -> None:
        for name in ("train_step", private.METRICS_UPDATE):
            if getattr(self.model.__dict__.get(name), "_trainguard", False):
                del self.model.__dict__[name]

    def _read_graph(self) -> StepRecord | None:
        """The last update's measurements from the wrapper's variables (compiled steps only)."""
        wrapper = self._wrapper
        values = self._jax_values() if keras.backend.backend() == "jax" else None
        if values is None:
            return wrapper.read_record()
        return wrapper.read_record(lambda var: np.asarray(values[wrapper.own_index(var)]))

    def _jax_reader(self):
        """Reads a variable's value from the JAX trainer's state while fit holds it (the variables themselves
        are emptied during an epoch to save memory); from the variable once the state is synced back."""
        model = self.model
        groups = {"trainable_variables": model.trainable_variables,
                  "non_trainable_variables": model.non_trainable_variables,
                  "optimizer_variables": model.optimizer.variables}
        where = {id(v): (group, i) for group, variables in groups.items() for i, v in enumerate(variables)}

        def read(variable):
            state, synced = private.jax_state(model)
            if state and not synced and id(variable) in where:
                group, i = where[id(variable)]
                if state.get(group) is not None:
                    return np.asarray(state[group][i])
            return collect.to_numpy(variable)

        return read

    def _jax_values(self):
        state, _ = private.jax_state(self.model)
        if state and state.get("optimizer_variables") is not None:
            return state["optimizer_variables"]
        return None

    def _jax_probe_forward(self, inputs) -> None:
        """One inference pass on the step's inputs, so the probe sees concrete activations (JAX compiles the
        training step). The weights are synced back from the trainer's state first."""
        self._jax_sync()
        self.model(inputs, training=False)

    def _jax_sync(self) -> None:
        private.sync_jax_state(self.model)


def _compiled_backend() -> bool:
    """Whether fit runs a traced train function (TensorFlow's ``tf.function``, JAX's ``jit``) that binds the
    optimizer when it is traced."""
    return keras.backend.backend() in ("tensorflow", "jax")
