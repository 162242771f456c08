"""The host side of the Keras guard: records -> StepStats -> core Monitor, policy, run log; orders -> wrapper.

One :class:`KerasSession` per guarded run. The :class:`~trainguard.adapters.keras.callback.Guard` callback
drives it at each ``on_train_batch_end``; a :class:`GuardedOptimizer` in a custom loop drives it after each
``apply``. It only translates: the detectors (``Monitor``), the repair decisions (``trainguard.core.policies``),
the diagnosis and the run log are the core's, shared with the PyTorch guard.

Containment (as the torch guard): an exception in the guard's own work switches that part off, is reported
once (``RuntimeWarning``, a ``guard_internal_error`` finding, an ``internal_error`` run-log event), and training
goes on as if unguarded.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import keras
import numpy as np

from trainguard.adapters.keras import collect, private
from trainguard.adapters.keras.activations import ActivationProbe
from trainguard.adapters.keras.effector import KerasEffector
from trainguard.adapters.keras.graph import GraphBatch
from trainguard.adapters.keras.modes import ModeRecorder
from trainguard.adapters.keras.records import StepRecord
from trainguard.core.detector import Detector
from trainguard.core.diagnosis import Cause
from trainguard.core.findings import Finding
from trainguard.core.policies import TrainingStopped, get_policy
from trainguard.core.presets import Preset, get_preset
from trainguard.core.schedule import schedule
from trainguard.core.session import PolicyRepair, Session, policy_name
from trainguard.core.session_view import SessionView
from trainguard.core.stats import StepStats
from trainguard.io.runlog import RunLogWriter

__all__ = ["KerasSession"]


class KerasSession(SessionView):
    def __init__(self, optimizer: Any, policy: Any = "safe", log: Any = None,
                 preset: str | Preset = "standard", model: Any = None, *, owned_by_optimizer: bool = True,
                 detectors: Detector | None = None, exporters: Any = (),
                 stop: Callable[[str], None] | None = None):
        if not optimizer.built:
            raise RuntimeError("the guarded optimizer must be built before its session starts")
        self.optimizer = optimizer
        self.model = model
        self.preset = get_preset(preset)
        self.schedule = schedule(self.preset)
        self.owned_by_optimizer = owned_by_optimizer
        self.variables = private.tracked_trainable_variables(optimizer)
        self.names = [v.path for v in self.variables]
        self.step = 0
        self.epoch: int | None = None
        self._stop = stop
        self._before: list[np.ndarray] | None = None  # weights before the next sampled step's update
        self._previous_finite = True  # the last step's loss and gradients were finite
        self._weights_finite = True  # the last reading of the weights
        self._batch: dict[str, Any] = {}
        self._closed = False
        # How the host reads a variable, and what it calls before writing one: the JAX trainer holds the
        # values apart from the variables during fit (the callback sets both then).
        self.read: Callable[[Any], np.ndarray] = collect.to_numpy
        self.before_host_write: Callable[[], None] = lambda: None
        # Compiled steps run the layers on tracers: the callback then sets a function that runs one extra
        # inference forward pass on the step's inputs for the activation probe, on sampled steps only.
        self.probe_forward: Callable[[Any], Any] | None = None
        self.last_inputs: Any = None
        # TensorFlow graph steps (fit's, or a custom loop's tf.function) measure their batch in the graph.
        self.graph_batch = GraphBatch() if keras.backend.backend() == "tensorflow" else None
        writer = None
        if log is not None:
            try:
                writer = RunLogWriter(log, framework=f"keras {keras.__version__} ({keras.backend.backend()})",
                                      parameters=self.names,
                                      config={"policy": policy_name(policy), "preset": self.preset.name})
            except OSError as e:
                raise ValueError(f"cannot open run log {log}: {e.strerror or e}") from None
        self.session = Session(detectors=detectors, log=writer, exporters=exporters, framework="keras",
                               step=lambda: self.step)
        self._containment = self.session.containment
        self.modes = ModeRecorder(model) if model is not None else None
        self.probe = ActivationProbe(model) if model is not None else None
        for part, hook in (("mode check", self.modes), ("activation probe", self.probe)):
            if hook is not None:
                self._try(part, hook.install)
        self._paused_arm = False
        built = get_policy(policy) if policy is not None else None
        if built is not None:
            effector = KerasEffector(optimizer, model, self.variables, lambda v: self.read(v),
                                     lambda: self.before_host_write(), snapshots="snapshots" in built.needs,
                                     modes=self.modes, inputs=lambda: self.last_inputs,
                                     graph_batch=self.graph_batch)
            self.session.start(lambda: PolicyRepair(built, effector))
        self._prepare_next_step()

    # ----------------------------------------------------------------- public
    @property
    def stop_reason(self) -> str | None:
        return self.session.stop_reason

    def diagnose(self) -> list[Cause]:
        return self.session.diagnose()

    def see_batch(self, inputs: Any = None, targets: Any = None, batch_size: int | None = None) -> None:
        """The data of the step about to run (the callback sees it through ``train_step``; custom loops pass it)."""
        if batch_size is None and inputs is not None:
            leaf = collect.first_leaf(inputs)
            shape = getattr(leaf, "shape", None)
            batch_size = int(shape[0]) if shape else None
        self._batch = {"batch_size": batch_size}
        self.last_inputs = inputs
        disabled = self._containment.disabled
        if self.schedule.data.due(self.step) and "data summary" not in disabled:
            summaries = self._try("data summary", lambda: (collect.data_summary(collect.first_leaf(inputs)),
                                                           collect.data_summary(collect.first_leaf(targets))))
            if summaries is not None:
                self._batch["inputs"], self._batch["targets"] = summaries
        if self.schedule.forensic.due(self.step) and "batch fingerprint" not in disabled:
            self._batch["fingerprint"] = self._try("batch fingerprint", collect.batch_fingerprint, inputs, targets)

    def see_measured_batch(self) -> None:
        """The batch as the last TensorFlow graph step measured it (``graph_batch``): its size, and its summaries
        on the steps the data check samples."""
        if self.graph_batch is None or not self.graph_batch.traced:
            return
        batch_size, inputs, targets = self.graph_batch.read()
        self._batch = {"batch_size": batch_size}
        if inputs is not None or targets is not None:
            self._batch["inputs"], self._batch["targets"] = inputs, targets

    def drain(self, *, batch_size: int | None = None, logs_loss: float | None = None,
              read_graph: Callable[[], StepRecord | None] | None = None) -> tuple[Finding, ...]:
        """Reads the updates made since the last call and feeds them through the core; returns new findings."""
        if self._closed:
            return ()
        records = self.optimizer.host.pending
        self.optimizer.host.pending = []
        if not records and read_graph is not None:
            record = self._try("statistics", read_graph)
            records = [record] if record is not None else []
        found: list[Finding] = []
        for i, record in enumerate(records):
            last = i == len(records) - 1
            # Under steps_per_execution several updates arrive at once (or only the last of them is read): the
            # weights copied before them span them all, so no update ratio then.
            one = len(records) == 1 and (record.index is None or record.index == self.step)
            before = self._before if one else None
            stats = self._try("statistics", self._build, record, batch_size, logs_loss if last else None, last,
                              before)
            if stats is None:
                self.step += 1
                continue
            found.extend(self._observe(stats))
        self._prepare_next_step()
        return tuple(found)

    def pause_probes(self) -> None:
        """An evaluation pass runs inside training (fit's validation): it must not count as a training step."""
        if self.probe is not None:
            self._paused_arm = self.probe.pause()

    def resume_probes(self) -> None:
        if self.probe is not None:
            self.probe.resume(self._paused_arm)
        if self.modes is not None:
            self.modes.clear()

    def close(self, status: str = "ok") -> None:
        if self._closed:
            return
        for hook in (self.probe, self.modes):
            if hook is not None:
                hook.remove()
        self.session.close(status, self.step)
        self._closed = True

    # ----------------------------------------------------------------- measuring
    def _prepare_next_step(self) -> None:
        """Sets up what the next update keeps: its raw gradients and a copy of the weights on sampled steps."""
        sampled = self.schedule.layers.due(self.step)
        disabled = self._containment.disabled
        self.optimizer.keep_gradients(sampled and "layer statistics" not in disabled)
        self._before = None
        if sampled and "layer statistics" not in disabled:
            self._before = self._try("layer statistics", collect.weight_arrays, self.variables, self.read)
        if self.modes is not None:
            self.modes.clear()
        if self.probe is not None and sampled and "activation probe" not in disabled:
            self.probe.arm()
        if self.graph_batch is not None:
            self.graph_batch.due.set(self.schedule.data.due(self.step) and "data summary" not in disabled)

    def _build(self, record: StepRecord, batch_size: int | None, logs_loss: float | None, last: bool,
               before: list[np.ndarray] | None) -> StepStats:
        if record.index is not None:
            self.step = max(self.step, record.index)
        step = self.step
        self.step += 1
        loss, norms, total = collect.step_numbers(record.loss, record.grad_norms)
        if loss is None:
            loss = logs_loss
        skipped = bool(collect.to_numpy(record.skipped))
        clipped = bool(collect.to_numpy(record.clipped))
        grads_finite = bool(np.all(np.isfinite(norms)))
        first_bad = None
        if not grads_finite:
            first_bad = self.names[int(np.argmin(np.isfinite(norms)))]
        loss_finite = loss is None or math.isfinite(loss)
        sampled = self.schedule.layers.due(step) and "layer statistics" not in self._containment.disabled
        layers = ()
        finite = grads_finite and loss_finite
        # The weights are read on sampled steps and when a non-finite episode starts; in between, a finite step
        # means finite weights and a non-finite one keeps the last reading.
        weights_finite = True if finite else self._weights_finite
        if sampled or (not finite and self._previous_finite):
            weights = self._try("layer statistics", collect.weight_arrays, self.variables, self.read)
            if weights is not None:
                weights_finite = all(bool(np.all(np.isfinite(w))) for w in weights)
                if sampled:
                    layers = self._try("layer statistics", collect.layer_stats, self.names, norms, weights,
                                       before, record.grads,
                                       collect.adam_second_moments(self.optimizer.inner_optimizer, self.read),
                                       record.grad_stats) or ()
        self._weights_finite, self._previous_finite = weights_finite, finite
        activations = ()
        if self.probe is not None and last and self.probe.armed:
            if not self.probe.records and self.probe_forward is not None and self.last_inputs is not None:
                modes = dict(self.modes.seen) if self.modes is not None else {}
                self._try("activation probe", self.probe_forward, self.last_inputs)
                if self.modes is not None:  # the extra pass runs in inference mode on purpose
                    self.modes.seen.clear()
                    self.modes.seen.update(modes)
            activations = self.probe.collect()
            if self.probe.error is not None:
                error, self.probe.error = self.probe.error, None
                self.probe.remove()
                self._containment.contain("activation probe", error, step)
        eval_modes = None
        if self.modes is not None and last and self.schedule.modes.due(step):
            eval_modes = self.modes.inference_mode_layers()
            if eval_modes is None and not self.modes.layers:  # no mode-sensitive layer at all: none in that mode
                eval_modes = ()
        batch = self._batch if last else {}
        buffers = ()
        if self.model is not None and self.schedule.forensic.due(step):
            buffers = self._try("moving statistics", collect.moving_statistics, self.model) or ()
        extra = {}
        if self.optimizer.orders.lr_scale != 1.0:
            extra["lr_scale"] = self.optimizer.orders.lr_scale
        if clipped:
            extra["clipped"] = 1.0
        return StepStats(
            step=step,
            loss=loss,
            epoch=self.epoch,
            batch_size=batch_size if batch_size is not None else batch.get("batch_size"),
            lrs=self._learning_rates(),
            grad_norm=total,
            loss_finite=loss_finite,
            grads_finite=grads_finite,
            weights_finite=weights_finite,
            first_nonfinite_grad=first_bad,
            layers=layers,
            activations=activations,
            eval_mode_modules=eval_modes,
            inputs=batch.get("inputs"),
            targets=batch.get("targets"),
            applied=not skipped,
            batch_fingerprint=batch.get("fingerprint"),
            buffers=buffers,
            extra=extra,
        )

    def _learning_rates(self) -> tuple[float, ...]:
        try:
            return (collect.learning_rate(self.optimizer.inner_optimizer, self.read),)
        except Exception:  # noqa: BLE001 - an exotic schedule: the LR is simply not recorded
            return ()

    # ----------------------------------------------------------------- observing
    def _observe(self, stats: StepStats) -> tuple[Finding, ...]:
        result = self.session.observe(stats)
        if result.stop is not None:
            self._stop_training(result.stop, stats.step)
        return result.findings

    def _stop_training(self, diagnosis: str, step: int) -> None:
        """The policy gave up. Under fit: ``model.stop_training`` (as Keras' ``TerminateOnNaN``), the run log
        ends "stopped" at ``on_train_end``. In a custom loop: close the run and raise ``TrainingStopped``, as the
        torch guard does."""
        if self._stop is not None:
            self._stop(diagnosis)
            return
        self.close("stopped")
        raise TrainingStopped(diagnosis, step)

    def _try(self, part: str, fn: Callable[..., Any], *args: Any) -> Any:
        return self._containment.run(part, fn, *args)
