"""The PyTorch guard: ``guard.step(loss)`` in place of ``optimizer.step()``.

>>> guard = Guard(model, optimizer, policy="observe", log="runs/exp.jsonl")     # doctest: +SKIP
>>> for x, y in loader:                                                           # doctest: +SKIP
...     optimizer.zero_grad(); loss = loss_fn(model(x), y); loss.backward()
...     guard.step(loss, batch_size=len(x), inputs=x, targets=y)
>>> guard.close()                                                                 # doctest: +SKIP

What a step costs (the "standard" preset): every step, one fused norm over the gradients (global norm,
finiteness, the first non-finite gradient); every ``preset.layer_every`` steps, per-tensor norms, a copy of the
weights (for this step's update ratio), Adam's moments and the activation hooks of that step's forward. All of
it stays on the device and is read back every ``fetch_every`` steps with one transfer (every step on CPU,
where a read is free; ``preset.fetch_every`` on an accelerator). Findings and the run log therefore lag by at
most ``fetch_every - 1`` steps on GPU; ``flush()`` or ``close()`` reads the rest.

Non-finite localisation: at the first non-finite step of an episode, the guard re-runs ``model(inputs)`` under
``torch.no_grad()`` with temporary forward hooks and records the first module whose output is non-finite
(``StepStats.first_nonfinite_module``). On CPU it does so before the update, with the step's own inputs and
weights. With a deferred fetch it knows only later, and searches only while the weights are unchanged since
(see ``_finish``). Nothing is hooked before that.

Repair hooks: a policy other than ``"observe"`` is built by ``trainguard.adapters.torch.repair.make_repairer``
and called around each update, through :class:`StepContext` and :class:`Repairer` below.

Containment: any exception in the guard's own work (statistics, hooks, detectors, run log, repairer) is
caught; training goes on exactly as if unguarded (the optimizer steps), the failing part is switched off, and
the failure is reported once: a ``RuntimeWarning``, an ``internal_error`` event in the run log and a finding
``guard_internal_error`` of severity WARNING (a warning because the run itself is fine but part of its
monitoring is now off, which the user must not miss). Exceptions raised by ``optimizer.step()`` itself are the
user's and propagate unchanged.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from trainguard.adapters.containment import INTERNAL_ERROR, Contained
from trainguard.adapters.torch import collect, distributed, forensic, hooks
from trainguard.adapters.torch.modes import eval_mode_modules, mode_sensitive_modules
from trainguard.adapters.torch.record import PendingStep, all_finite, fetch
from trainguard.core.actions import Action
from trainguard.core.detector import Detector
from trainguard.core.diagnosis import Cause, StatsHistory, diagnose
from trainguard.core.findings import Finding
from trainguard.core.monitor import Monitor
from trainguard.core.presets import Preset, get_preset
from trainguard.core.stats import StepStats
from trainguard.io.runlog import RunLogWriter

__all__ = ["Guard", "StepContext", "Repairer", "INTERNAL_ERROR"]

@dataclass
class StepContext:
    """What a repairer sees before the update of one step. Tensors are on the device; reading them syncs.

    ``grad_norm`` and ``finite`` are computed from ``vector`` when first read: a repairer that decides from
    ``host`` on a quiet step launches no kernel at all."""

    step: int
    loss: torch.Tensor  # detached 0-dim
    vector: torch.Tensor  # [loss, ||g_1||, ..., ||g_n||], float32 on the device (collect.step_vector)
    params: list[nn.Parameter]  # the parameters that have a gradient, forward order
    names: list[str]
    host: list[float] | None = None  # ``vector`` read back where that is free (CPU); None on an accelerator

    @functools.cached_property
    def grad_norm(self) -> torch.Tensor:
        """Global L2 norm of the gradients, 0-dim float32 (before any clipping)."""
        return torch.linalg.vector_norm(self.vector[1:])

    @functools.cached_property
    def finite(self) -> torch.Tensor:
        """0-dim bool: the loss and every gradient are finite."""
        return torch.isfinite(self.vector).all()


class Repairer(Protocol):
    """A repair policy, as the guard calls it (built by ``repair.make_repairer(policy, guard)``).

    ``before_update`` may change the gradients in place (clipping) and returns whether to apply this update:
    a Python bool, or a 0-dim bool tensor on the device so that the decision needs no host sync (see
    ``Guard._apply_update``). ``after_update`` runs when the step's statistics have been fetched (up to
    ``fetch_every - 1`` steps later on GPU) with the findings they raised, and returns the actions it took;
    the guard logs them and appends them to ``guard.actions``. A repairer may read and change
    ``guard.model``, ``guard.optimizer``, ``guard.scheduler``; ``guard.step_count``, ``guard.monitor`` and
    ``guard.log`` are there to read.
    """

    def before_update(self, ctx: StepContext) -> bool | torch.Tensor: ...

    def after_update(self, stats: StepStats, findings: tuple[Finding, ...]) -> list[Action]: ...

    def close(self) -> None: ...


def _named_parameters(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[list[nn.Parameter], list[str]]:
    """The optimizer's parameters in the model's registration order (forward order for the usual model),
    then any the model does not own, named ``param_groups[i][j]``."""
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    params, names, seen = [], [], set()
    for name, p in model.named_parameters():
        if id(p) in in_optimizer and id(p) not in seen:
            params.append(p)
            names.append(name)
            seen.add(id(p))
    for i, group in enumerate(optimizer.param_groups):
        for j, p in enumerate(group["params"]):
            if id(p) not in seen:
                params.append(p)
                names.append(f"param_groups[{i}][{j}]")
                seen.add(id(p))
    return params, names


def _make_repairer(policy: Any, guard: Guard) -> Repairer | None:
    if isinstance(policy, str) and policy == "observe":
        return None
    if all(callable(getattr(policy, hook, None)) for hook in ("before_update", "after_update", "close")):
        return policy  # a Repairer object of the user's own
    try:
        from trainguard.adapters.torch import repair
    except ModuleNotFoundError as e:
        if e.name != "trainguard.adapters.torch.repair":
            raise
        raise ValueError(f"unknown policy {policy!r}; this version of trainguard offers only 'observe'") from None
    return repair.make_repairer(policy, guard)


class Guard(Contained):
    """Watches a PyTorch training loop; ``step(loss)`` replaces ``optimizer.step()``.

    Args:
        model: the ``nn.Module`` being trained.
        optimizer: its ``torch.optim.Optimizer``.
        policy: ``"safe"`` (the default: skip non-finite steps, clip gradient-norm outliers only),
            ``"observe"`` (measure, detect, log; never touch the run), ``"auto"`` (the escalating repair chain),
            a policy composed with ``trainguard.policies.chain(...)``, or an object that implements
            :class:`Repairer`.
        log: path of a JSONL run log to append to (``trainguard report PATH`` reads it), or None.
        preset: the statistics budget, a name from ``trainguard.core.presets.PRESETS`` or a ``Preset``.
        scheduler: the LR scheduler, if any (a repair may roll it back); the guard never steps it.
        detectors: a core ``Detector`` (e.g. ``chain(...)``) in place of ``default_detectors()``.
        fetch_every: steps between reads of the on-device statistics; default 1 on CPU, the preset's on GPU.
        exporters: callables receiving each recorded StepStats, Finding and Action (``trainguard.exports``:
            TensorBoard, W&B, MLflow). Under torch.distributed the statistics are reduced across ranks and
            only rank 0 writes the log and exports (``trainguard.adapters.torch.distributed``).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, policy: Any = "safe",
                 log: str | Any | None = None, preset: str | Preset = "standard", *, scheduler: Any = None,
                 detectors: Detector | None = None, fetch_every: int | None = None, exporters: Any = ()):
        if not isinstance(model, nn.Module):
            raise TypeError(f"Guard needs the torch.nn.Module being trained, got {type(model).__name__}")
        if not hasattr(optimizer, "param_groups") or not callable(getattr(optimizer, "step", None)):
            raise TypeError(f"Guard needs the model's torch.optim.Optimizer, got {type(optimizer).__name__}")
        if detectors is not None and not isinstance(detectors, Detector):
            raise TypeError(f"detectors= takes a trainguard Detector (see trainguard.core.detector), "
                            f"got {type(detectors).__name__}")
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.preset = get_preset(preset)
        # the cadences, read every step
        self._layer_every, self._mode_every = self.preset.layer_every, self.preset.mode_every
        self._data_batches, self._forensic_steps = self.preset.data_batches, self.preset.forensic_steps
        self.policy = policy
        # a torch.compile'd model is named by its original module ("0.weight", not "_orig_mod.0.weight")
        self.params, self.names = _named_parameters(getattr(model, "_orig_mod", model), optimizer)
        self.device = self.params[0].device if self.params else torch.device("cpu")
        # Every gradient float32 on one device (the usual case): the norms need no conversion.
        self._plain = all(p.dtype == torch.float32 and p.device == self.device for p in self.params)
        if fetch_every is None:
            fetch_every = 1 if self.device.type == "cpu" else self.preset.fetch_every
        if not isinstance(fetch_every, int) or isinstance(fetch_every, bool) or fetch_every < 1:
            raise ValueError(f"fetch_every must be a positive integer, got {fetch_every!r}")
        self.fetch_every = fetch_every
        self.monitor = Monitor(detectors)
        self.step_count = 0
        self.actions: list[Action] = []
        # Kept for diagnose(): the first steps, the recent ones, a thinned middle (the run log keeps them all).
        self.history = StatsHistory()
        self._findings: list[Finding] = []
        self._pending: list[PendingStep] = []
        self._disabled: set[str] = set()
        self._inputs: Any = None
        self._previous_finite = True  # the last fetched step was finite (a non-finite episode starts after it)
        self._mode_modules = mode_sensitive_modules(getattr(model, "_orig_mod", model))
        self._running_buffers: list[tuple[str, torch.Tensor]] | None = None  # found on the first forensic step
        self._probe = hooks.ActivationProbe(model)
        if hasattr(model, "_orig_mod"):  # torch.compile'd: adding and removing hooks would force recompilations
            self._disabled.add("activation hooks")
        self._reduce = distributed.step_reducer(model)  # None outside a process group
        if self._reduce is not None and distributed.is_sharded(model):
            self._disabled.add("layer statistics")  # FSDP: per-tensor statistics of shards are not reduced
        if self._reduce is not None:  # its own forward on some ranks only could wait forever on a collective
            self._disabled.add("non-finite localisation")
        self._closed = False
        self.log: RunLogWriter | None = None
        self._repairer: Repairer | None = None
        self._repairer = _make_repairer(policy, self)
        if exporters:
            from trainguard import exports
            exporters = exports.check_exporters(exporters)
        if log is not None and distributed.is_log_rank():
            try:
                self.log = RunLogWriter(log, framework=f"torch {torch.__version__}", parameters=self.names,
                                        config={"policy": policy if isinstance(policy, str) else type(policy).__name__,
                                                "preset": self.preset.name})
            except OSError as e:
                raise ValueError(f"cannot open run log {log}: {e.strerror or e}") from None
        if exporters and distributed.is_log_rank():
            self.log = exports.ExportingLog(self.log, exporters)
        if self._layer_sampled(0) and "activation hooks" not in self._disabled:
            self._probe.install()

    # ----------------------------------------------------------------- public
    @property
    def findings(self) -> list[Finding]:
        """Every finding so far, in the order raised (detectors' and the guard's own internal errors)."""
        return self._findings

    def step(self, loss: torch.Tensor, batch_size: int | None = None, *, inputs: Any = None, targets: Any = None,
             epoch: int | None = None) -> tuple[Finding, ...]:
        """Measures this step, applies the update (``optimizer.step()``, unless a repair policy skips it) and
        returns the findings raised by the statistics fetched during this call."""
        if self._closed:
            raise RuntimeError("guard.step() called after guard.close()")
        step = self.step_count
        self._inputs = inputs
        params = self.params
        grads = [p.grad for p in params]
        if any(g is None for g in grads):
            with_grad = [i for i, g in enumerate(grads) if g is not None]
            params = [params[i] for i in with_grad]
            grads = [grads[i] for i in with_grad]
            names = [self.names[i] for i in with_grad]
        else:
            names = self.names
        if not isinstance(loss, torch.Tensor):
            loss = torch.tensor(float(loss))
        sampled = self._layer_sampled(step)

        entry = before = None
        if "statistics" not in self._disabled:
            try:
                entry = self._measure(step, loss, grads, names, epoch, batch_size)
            except Exception as e:  # noqa: BLE001 - containment
                self._contain("statistics", e)
        if entry is not None and sampled:
            before = self._try("layer statistics", self._measure_layers, entry, params, grads)
            self._try("activation hooks", self._collect_activations, entry)
        elif self._probe.installed:
            self._probe.remove()
        if entry is not None and step < self._data_batches:
            self._try("data summary", self._summarise_data, entry, inputs, targets)
        if entry is not None and step < self._forensic_steps:
            self._try("forensic recording", self._record_forensics, entry, inputs, targets)
        if entry is not None and (step % self._mode_every == 0 or step < self._forensic_steps):
            entry.eval_mode_modules = eval_mode_modules(self._mode_modules)
        if entry is not None and inputs is not None and self.fetch_every == 1:
            # CPU: reading the step's values is free, so a NaN is located now, with the weights that made it.
            self._try("non-finite localisation", self._locate_now, entry, inputs)

        apply: bool | torch.Tensor = True
        if self._repairer is not None and "repairer" not in self._disabled:
            try:
                apply = self._repairer.before_update(self._context(step, loss, grads, params, names, entry))
            except Exception as e:  # noqa: BLE001 - containment: the update is applied as if unguarded
                self._contain("repairer", e)
                apply = True
        applied = self._apply_update(apply)

        if entry is not None:
            if isinstance(applied, torch.Tensor):
                entry.applied = None
                entry.add("applied", applied, self.device)
            else:
                entry.applied = applied
            if before is not None:
                self._try("layer statistics", self._measure_after_update, entry, params, grads, names, before)
            self._pending.append(entry)
        self.step_count += 1
        found: tuple[Finding, ...] = ()
        if len(self._pending) >= self.fetch_every:
            found = self.flush()
        if (self._layer_sampled(self.step_count) and "statistics" not in self._disabled
                and "activation hooks" not in self._disabled):
            self._try("activation hooks", self._probe.install)
        return found

    def flush(self) -> tuple[Finding, ...]:
        """Fetches the pending statistics now (one host-device sync), feeds them to the detectors, the run log
        and the repairer; returns the findings they raised."""
        entries, self._pending = self._pending, []
        if not entries:
            return ()
        try:
            fetch(entries)
            # The weights are still those of step i's forward when no update was applied from step i on.
            unchanged, applied_since = [], False
            for entry in reversed(entries):
                applied_since = applied_since or entry.was_applied
                unchanged.append(not applied_since)
            unchanged.reverse()
        except Exception as e:  # noqa: BLE001 - containment
            self._contain("statistics", e)
            return ()
        found: list[Finding] = []
        for entry, weights_unchanged in zip(entries, unchanged):
            try:
                stats = self._finish(entry, weights_unchanged)
            except Exception as e:  # noqa: BLE001 - containment
                self._contain("statistics", e)
                return tuple(found)
            found.extend(self._observe(stats))
        return tuple(found)

    def locate_non_finite(self, inputs: Any) -> str | None:
        """Runs ``model(inputs)`` once more (no grad, nothing changed) and names the first module whose output
        is non-finite, or ``"(inputs)"``; None when everything is finite."""
        return hooks.locate_non_finite(self.model, inputs)

    def diagnose(self) -> list[Cause]:
        """The ranked root causes of what went wrong so far: ``.code``, ``.confidence``, ``.evidence`` and
        ``.fix`` (a PyTorch snippet ending with its docs/causes.md link); ``[]`` for a healthy run.

        Reads the pending statistics first, then diagnoses the kept ``history`` with every finding. An error
        in the diagnosis is the guard's own: it is contained like any other and gives ``[]``."""
        if not self._closed:
            self.flush()
        causes = self._try("diagnosis", diagnose, list(self.history), self._findings, "torch")
        return causes if causes is not None else []

    def close(self, status: str = "ok") -> None:
        """Reads the pending statistics, removes the hooks, closes the repairer and the run log."""
        if self._closed:
            return
        self.flush()
        self._probe.remove()
        if self._repairer is not None and "repairer" not in self._disabled:
            try:
                self._repairer.close()
            except Exception as e:  # noqa: BLE001 - containment
                self._contain("repairer", e)
        if self.log is not None and "run log" not in self._disabled:
            try:
                self.log.close(status)
            except Exception as e:  # noqa: BLE001 - containment
                self._contain("run log", e)
        self._closed = True

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close("ok")
        else:
            self.close("interrupted" if issubclass(exc_type, KeyboardInterrupt) else "error")

    # --------------------------------------------------------------- measuring
    def _layer_sampled(self, step: int) -> bool:
        return step % self._layer_every == 0 or step < self._forensic_steps

    def _measure(self, step: int, loss: torch.Tensor, grads: list[torch.Tensor], names: list[str],
                 epoch: int | None, batch_size: int | None) -> PendingStep:
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        tensor_lrs = any(isinstance(lr, torch.Tensor) for lr in lrs)
        entry = PendingStep(step, epoch, batch_size, () if tensor_lrs else tuple(float(lr) for lr in lrs), names)
        vector = collect.step_vector(loss, grads, self.device, self._plain)
        entry.add("step", vector if self._reduce is None else self._reduce(vector), self.device)
        if tensor_lrs:
            entry.add("lrs", torch.stack([torch.as_tensor(lr, dtype=torch.float32, device=self.device)
                                          for lr in lrs]), self.device)
        return entry

    def _measure_layers(self, entry: PendingStep, params: list[nn.Parameter],
                        grads: list[torch.Tensor]) -> list[torch.Tensor] | None:
        """Per-tensor statistics known before the update; returns the weights' copy for the update ratio."""
        if not params:
            return None
        weights = [p.detach() for p in params]
        entry.numels = [g.numel() for g in grads]
        entry.add("weight_norm", collect.tensor_norms(weights), self.device)
        entry.add("grad_sparsity", collect.grad_sparsity(grads), self.device)
        return collect.snapshot(weights)

    def _measure_after_update(self, entry: PendingStep, params: list[nn.Parameter], grads: list[torch.Tensor],
                              names: list[str], before: list[torch.Tensor]) -> None:
        weights = [p.detach() for p in params]
        entry.add("update_norm", collect.update_norms(weights, before), self.device)
        adam = []
        for group in self.optimizer.param_groups:
            betas = group.get("betas")
            beta2 = float(betas[1]) if betas is not None else None
            eps = float(group.get("eps", 1e-8))
            for p in group["params"]:
                state = self.optimizer.state.get(p)
                if state and "exp_avg_sq" in state and p.grad is not None:
                    adam.append((p, collect.adam_moments(p.grad, state["exp_avg_sq"], state.get("step", 1.0),
                                                         beta2, eps)))
        if adam:
            index = {id(p): i for i, p in enumerate(params)}
            adam.sort(key=lambda item: index.get(id(item[0]), len(index)))
            entry.adam_names = [names[index[id(p)]] for p, _ in adam if id(p) in index]
            entry.add("adam", torch.cat([values for p, values in adam if id(p) in index]), self.device)

    def _collect_activations(self, entry: PendingStep) -> None:
        meta, values = self._probe.collect()
        if self._probe.error is not None:
            error, self._probe.error = self._probe.error, None
            raise error
        if values is not None:
            entry.activation_meta = meta
            entry.add("activations", values, self.device)

    def _summarise_data(self, entry: PendingStep, inputs: Any, targets: Any) -> None:
        for key, data in (("inputs", inputs), ("targets", targets)):
            if isinstance(data, torch.Tensor) and data.is_floating_point() and data.numel() > 0:
                entry.add(key, collect.data_summary(data), self.device)

    def _record_forensics(self, entry: PendingStep, inputs: Any, targets: Any) -> None:
        """The "forensic" preset's first steps: batch fingerprint and running statistics, for ``trainguard diff``
        (each reads back at once: a sync the preset accepts for those steps only)."""
        if inputs is not None or targets is not None:
            entry.batch_fingerprint = forensic.batch_fingerprint(inputs, targets)
        if self._running_buffers is None:
            self._running_buffers = forensic.running_stat_buffers(self.model)
        entry.buffers = forensic.buffer_stats(self._running_buffers)

    def _locate_now(self, entry: PendingStep, inputs: Any) -> None:
        if self._previous_finite and not entry.step_finite():
            entry.located = True
            entry.first_nonfinite_module = hooks.locate_non_finite(self.model, inputs)

    def _context(self, step: int, loss: torch.Tensor, grads: list[torch.Tensor], params: list[nn.Parameter],
                 names: list[str], entry: PendingStep | None) -> StepContext:
        vector = entry.pieces.get("step") if entry is not None else None
        host = None
        if vector is None:  # statistics off
            vector = collect.step_vector(loss, grads, self.device, self._plain)
        elif vector.device.type == "cpu":  # a read that costs no sync, and spares the repairer two kernels
            host = entry.prefetch("step")
        return StepContext(step=step, loss=loss.detach(), vector=vector, params=list(params), names=list(names),
                           host=host)

    # ---------------------------------------------------------------- updating
    def _apply_update(self, apply: bool | torch.Tensor) -> bool | torch.Tensor:
        """Steps the optimizer, or not.

        A Python bool decides directly. A 0-dim bool tensor goes, with torch's fused optimizers (SGD, Adam,
        AdamW, Adagrad with ``fused=True``: ``_step_supports_amp_scaling``), to the optimizer as ``found_inf``,
        the way ``torch.amp.GradScaler`` skips a step: the kernel leaves the weights and the optimizer state
        (momentum, moments, Adam's step count) untouched on the device, with no sync. Any other optimizer
        reads the tensor with one ``.item()``: a host sync on GPU, free on CPU. Returns what was applied: a
        bool, or the device flag.
        """
        if isinstance(apply, torch.Tensor):
            optimizer = self.optimizer
            if getattr(optimizer, "_step_supports_amp_scaling", False) and optimizer.defaults.get("fused"):
                optimizer.found_inf = (~apply.bool()).float()  # type: ignore[attr-defined]
                try:
                    optimizer.step()
                finally:
                    del optimizer.found_inf  # type: ignore[attr-defined]
                return apply
            apply = bool(apply.item())
        if apply:
            self.optimizer.step()
        return bool(apply)

    # --------------------------------------------------------------- observing
    def _finish(self, entry: PendingStep, weights_unchanged: bool) -> StepStats:
        """Turns fetched values into StepStats.

        At the onset of a non-finite episode that could not be located before its update (deferred fetch), the
        search runs now only if it can still be faithful: no update has been applied since that step (a repair
        skipped them), so the weights are those of its forward; it runs on the inputs of the step now being
        taken. Otherwise ``first_nonfinite_module`` stays None (``first_nonfinite_grad`` still names a layer,
        and ``guard.locate_non_finite(inputs)`` can be asked by hand)."""
        finite = all_finite(entry.values.get("step", ()))
        if (not finite and self._previous_finite and not entry.located and weights_unchanged
                and self._inputs is not None):
            entry.located = True
            entry.first_nonfinite_module = self._try("non-finite localisation", hooks.locate_non_finite,
                                                     self.model, self._inputs)
        self._previous_finite = finite
        return entry.build()

    def _observe(self, stats: StepStats) -> tuple[Finding, ...]:
        self.history.append(stats)
        found: tuple[Finding, ...] = ()
        if "detectors" not in self._disabled:
            try:
                found = self.monitor.observe(stats)
            except Exception as e:  # noqa: BLE001 - containment
                self._contain("detectors", e, stats.step)
        self._findings.extend(found)
        if self.log is not None and "run log" not in self._disabled:
            try:
                self.log.step(stats)
                for finding in found:
                    self.log.finding(finding)
            except Exception as e:  # noqa: BLE001 - containment
                self._contain("run log", e, stats.step)
        if self._repairer is not None and "repairer" not in self._disabled:
            try:
                actions = list(self._repairer.after_update(stats, found))
            except Exception as e:  # noqa: BLE001 - containment
                self._contain("repairer", e, stats.step)
                actions = []
            self.actions.extend(actions)
            if actions and self.log is not None and "run log" not in self._disabled:
                try:
                    for action in actions:
                        self.log.action(action)
                except Exception as e:  # noqa: BLE001 - containment
                    self._contain("run log", e, stats.step)
            if getattr(self._repairer, "stop_reason", None):
                self._stop_training(self._repairer.stop_reason, stats.step)
        return found

    def _stop_training(self, diagnosis: str, step: int) -> None:
        """The repair policy gave up: close the run (status "stopped") and raise ``trainguard.TrainingStopped``."""
        from trainguard.core.policies import TrainingStopped

        self.close("stopped")
        raise TrainingStopped(diagnosis, step)

    # ------------------------------------------------------------- containment
    def _current_step(self) -> int:
        return self.step_count

    def _on_part_disabled(self, part: str) -> None:
        if part == "activation hooks":
            self._probe.remove()
