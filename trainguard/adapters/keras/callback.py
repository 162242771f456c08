"""``Guard``: the Keras callback. ``model.fit(x, y, callbacks=[Guard(policy="auto", log="runs/exp.jsonl")])``.

At ``on_train_begin`` it wraps ``model.optimizer`` in a :class:`GuardedOptimizer` (built on the model's
trainable variables), wraps ``model.train_step`` to see each batch's size and the scale of the first batches'
data, and records the ``training`` argument of BatchNormalization/Dropout calls. After each batch it feeds the
wrapper's measurements through the core (:class:`KerasSession`). At ``on_train_end`` everything is put back:
``model.optimizer`` is the user's optimizer again, with the state the run gave it.

Under the torch backend every update is seen, with ``steps_per_execution`` too (the wrapper queues each
update's tensors). Under JAX the step is compiled: the guard reads the wrapper's variables from the trainer's
state after each call of the train function, so with ``steps_per_execution=k`` it sees every k-th update;
reading them costs one device-to-host copy per batch (free on CPU).
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np

from trainguard.adapters.keras.optimizer import GuardedOptimizer, StepRecord
from trainguard.adapters.keras.session import KerasSession
from trainguard.core.detector import Detector
from trainguard.core.presets import Preset, get_preset

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

    After training: ``guard.findings``, ``guard.actions``, ``guard.diagnose()``.
    """

    def __init__(self, policy: Any = "safe", log: str | None = None, preset: str | Preset = "standard",
                 detectors: Detector | None = None):
        super().__init__()
        from trainguard.core.policies import get_policy

        get_policy(policy)  # a bad name fails here, with a one-line message, not mid-fit
        self.policy = policy
        self.log_path = log
        self.preset = get_preset(preset)
        self.detectors = detectors
        self.session: KerasSession | None = None
        self._wrapper: GuardedOptimizer | None = None
        self._original_optimizer = None
        self._patched_train_step = False
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
        model = self.model
        optimizer = getattr(model, "optimizer", None)
        if optimizer is None:
            raise ValueError("trainguard.keras.Guard needs a compiled model (model.compile(optimizer=...))")
        if isinstance(optimizer, GuardedOptimizer):
            wrapper = optimizer  # compiled with a GuardedOptimizer: the callback drives it
            self._original_optimizer = None
        else:
            wrapper = GuardedOptimizer(optimizer)
            self._original_optimizer = optimizer
        wrapper.host.session_args = None
        if wrapper.host.session is not None:  # the optimizer watched itself so far: the callback takes over
            wrapper.host.session.close()
        wrapper.build(model.trainable_variables)
        wrapper.built = True
        if self._original_optimizer is not None:
            model.optimizer = wrapper
        self._wrapper = wrapper
        self.session = KerasSession(wrapper, self.policy, self.log_path, self.preset, model,
                                    owned_by_optimizer=False, detectors=self.detectors, stop=self._stop)
        wrapper.host.session = self.session
        if keras.backend.backend() == "jax":
            self.session.before_host_write = self._jax_sync
        self._patch_train_step()

    def on_epoch_begin(self, epoch, logs=None):
        if self.session is not None:
            self.session.epoch = epoch
        self._epoch_loss = None

    def on_train_batch_end(self, batch, logs=None):
        if self.session is None:
            return
        self.session.drain(logs_loss=self._batch_loss(batch, logs), read_graph=self._read_graph)

    def on_train_end(self, logs=None):
        self._unpatch_train_step()
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
        return (batch + 1) * mean - (k + 1) * prev_mean

    def _patch_train_step(self) -> None:
        model, session = self.model, self.session
        original = model.train_step

        def train_step(data, *args, **kwargs):
            x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
            session.see_batch(x, y)
            return original(data, *args, **kwargs)

        object.__setattr__(model, "train_step", train_step)
        self._patched_train_step = True

    def _unpatch_train_step(self) -> None:
        if self._patched_train_step:
            try:
                object.__delattr__(self.model, "train_step")
            except AttributeError:
                pass
            self._patched_train_step = False

    def _read_graph(self) -> StepRecord | None:
        """The last update's measurements from the wrapper's variables (compiled steps only)."""
        wrapper = self._wrapper
        values = self._jax_values() if keras.backend.backend() == "jax" else None

        def value(var):
            if values is not None:
                return np.asarray(values[wrapper.own_index(var)])
            return np.asarray(keras.ops.convert_to_numpy(var))

        return StepRecord(loss=None, grad_norms=value(wrapper.tg_grad_norms), skipped=value(wrapper.tg_skipped) > 0.5,
                          clipped=value(wrapper.tg_clipped) > 0.5, grads=None)

    def _jax_values(self):
        state = getattr(self.model, "_jax_state", None)
        if state and state.get("optimizer_variables") is not None:
            return state["optimizer_variables"]
        return None

    def _jax_sync(self) -> None:
        sync = getattr(self.model, "jax_state_sync", None)
        if callable(sync) and getattr(self.model, "_jax_state", None):
            sync()
