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
most ``fetch_every - 1`` steps on GPU; ``flush()`` or ``close()`` reads the rest. ``fetch_every > 1`` on CPU
batches the host's work the same way (the detectors, the policy's update and the run log then run on up to
``fetch_every`` steps in a row, with the interpreter's caches warm: ~30% less guard time on a 5 ms step),
while what needs the step at once still has it: the skip decision reads the step's norms, a non-finite step is
located before its update, and a non-finite or skipped step is handed to the session at once (the policy's
escalation as at ``fetch_every=1``). Findings of the quiet steps in between, and the clip threshold the
policy refreshes from them, lag by up to ``fetch_every - 1`` steps.

Real loops (docs/real-loops.md): ``Guard(..., scaler=scaler)`` under AMP (the guard unscales, measures the unscaled
gradients, calls ``scaler.step``/``scaler.update``; see ``amp.py``); ``guard.accumulate(loss, ...)`` per micro-batch
then ``guard.step()`` under gradient accumulation (see ``accumulate.py``); ``Guard(..., clip=max_norm)`` for a run
that clips its gradients: ``guard.step(loss, grad_norm=clip_grad_norm_(...))`` when the loop clips (the guard takes
the pre-clip norm it returns, no second pass), or ``guard.step(loss)`` and the guard clips with that cap.

Non-finite localisation: at the first non-finite step of an episode, the guard re-runs ``model(inputs)`` under
``torch.no_grad()`` with temporary forward hooks and records the first module whose output is non-finite
(``StepStats.first_nonfinite_module``). On CPU it does so before the update, with the step's own inputs and
weights. With a deferred fetch it knows only later, and searches only while the weights are unchanged since
(see ``_finish``). Nothing is hooked before that.

The guard only translates: ``measure.py`` turns tensors into statistics, the framework-free
:class:`~trainguard.core.session.Session` keeps the history, runs the detectors and the policy, measures the
actions' effects, writes the run log and the exporters, and ``effector.py`` carries the policy's orders out
around each update (``update.py``: what a repairer sees, the optimizer step taken or skipped).

Containment: any exception in the guard's own work (statistics, hooks, detectors, run log, repairer) is
caught; training goes on exactly as if unguarded (the optimizer steps), the failing part is switched off, and
the failure is reported once (:mod:`trainguard.core.containment`). Exceptions raised by ``optimizer.step()``
itself are the user's and propagate unchanged.
"""
from __future__ import annotations

import math
import time
import warnings
from typing import Any

import torch
from torch import nn

from trainguard.adapters.torch import amp, collect, distributed, hooks
from trainguard.adapters.torch.accumulate import MicroBatches
from trainguard.adapters.torch.backward_count import BackwardCounter
from trainguard.adapters.torch.effector import TorchEffector
from trainguard.adapters.torch.measure import Measurer, host_lrs
from trainguard.adapters.torch.modes import eval_mode_modules
from trainguard.adapters.torch.record import PendingStep, all_finite, fetch
from trainguard.adapters.torch.sentinel import GradientSentinel
from trainguard.adapters.torch.update import Repairer, StepContext, UserRepair, apply_update, is_repairer
from trainguard.core.budget import (DEFAULT_SHARE, WARMUP_STEPS, BudgetState, budget_init, budget_update, layers_due,
                                    light_steps)
from trainguard.core.detector import Detector
from trainguard.core.diagnosis import Cause
from trainguard.core.findings import Finding
from trainguard.core.policies import TrainingStopped, get_policy
from trainguard.core.presets import Preset, get_preset
from trainguard.core.schedule import schedule
from trainguard.core.session import REPAIRER, PolicyRepair, Session, check_guard_arguments, policy_name
from trainguard.core.session_view import SessionView
from trainguard.core.stats import StepStats
from trainguard.core.validation import validation_record
from trainguard.io.runlog import RunLogWriter

__all__ = ["Guard", "StepContext", "Repairer"]


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


def _groups_shape(optimizer: torch.optim.Optimizer) -> list[int]:
    """How many parameters each param group holds: changes when ``add_param_group`` is called."""
    return [len(group["params"]) for group in optimizer.param_groups]


def _groups_changed(optimizer: torch.optim.Optimizer, shape: list[int]) -> bool:
    groups = optimizer.param_groups
    if len(groups) != len(shape):
        return True
    for group, size in zip(groups, shape):  # a plain loop: the cheapest form of a per-step check
        if len(group["params"]) != size:
            return True
    return False


class Guard(SessionView):
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
        scaler: the run's ``torch.amp.GradScaler`` under mixed precision: ``step`` then unscales the gradients
            (unless the loop did), measures them, and calls ``scaler.step(optimizer)`` and ``scaler.update()``.
            Pass the unscaled loss to ``step``. The scaler's skip of an overflow step is recorded as such.
        clip: the ``max_norm`` of the run's own gradient clipping. With ``step(loss, grad_norm=norm)`` (``norm``
            as ``clip_grad_norm_`` returned it) the guard records that pre-clip norm; with ``step(loss)`` the guard
            clips at this cap itself, as ``clip_grad_norm_`` would. Routine clipping is then no alarm.
        budget: the guard's overhead budget, a share of the training step: ``0.02`` (the default), any share in
            (0, 1), or None (every step measured in full). Where the guard's work costs more than that share of
            the step it times (a small model's step on CPU), it measures in full only on some steps, and at least
            every 48th (:mod:`trainguard.core.budget`); the steps in between read the loss alone, which the loss's
            detectors (spikes, divergence, plateaus) and the run log still get (see :meth:`_budgeted_step`). Where
            it costs less (a step long enough), every step is full, as with None. Applies to ``guard.step`` with
            the ``observe`` and ``safe`` policies on CPU, without ``scaler=``/``clip=``/``accumulate``/
            ``grad_norm=`` or torch.distributed; elsewhere every step is full and the run log says why (event
            ``overhead_budget_off``).

    The optimizer's param groups are followed as they change (``optimizer.add_param_group``).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, policy: Any = "safe",
                 log: str | Any | None = None, preset: str | Preset = "standard", *, scheduler: Any = None,
                 detectors: Detector | None = None, fetch_every: int | None = None, exporters: Any = (),
                 scaler: Any = None, clip: float | None = None, budget: float | None = DEFAULT_SHARE):
        if not isinstance(model, nn.Module):
            raise TypeError(f"Guard needs the torch.nn.Module being trained, got {type(model).__name__}")
        if not hasattr(optimizer, "param_groups") or not callable(getattr(optimizer, "step", None)):
            raise TypeError(f"Guard needs the model's torch.optim.Optimizer, got {type(optimizer).__name__}")
        exporters = check_guard_arguments(policy=policy, log=log, detectors=detectors, exporters=exporters)
        self.scaler = amp.check_scaler(scaler)
        self.clip = _check_clip(clip)
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.preset = get_preset(preset)
        self.schedule = schedule(self.preset)
        budget_state = None if budget is None else budget_init(
            budget, layer_every=self.preset.layer_every,
            warmup=max(WARMUP_STEPS, self.preset.data_batches, self.preset.forensic_steps))
        self.policy = policy
        built_policy = None if is_repairer(policy) else get_policy(policy)  # an unknown name: a one-line error
        # a torch.compile'd model is named by its original module ("0.weight", not "_orig_mod.0.weight")
        self._named_model = getattr(model, "_orig_mod", model)
        self.params, self.names = _named_parameters(self._named_model, optimizer)
        self._groups = _groups_shape(optimizer)
        self.device = self.params[0].device if self.params else torch.device("cpu")
        self._on_cpu = self.device.type == "cpu"  # the step vector lives on ``device`` (PendingStep.add puts it there)
        if fetch_every is None:
            fetch_every = 1 if self.device.type == "cpu" else self.preset.fetch_every
        if not isinstance(fetch_every, int) or isinstance(fetch_every, bool) or fetch_every < 1:
            raise ValueError(f"fetch_every must be a positive integer, got {fetch_every!r}")
        self.fetch_every = fetch_every
        self._read_free = fetch_every == 1 or self.device.type == "cpu"  # a step's values are read without a sync
        self.step_count = 0
        self._pending: list[PendingStep] = []
        self._open: tuple[Any, ...] | None = None  # a step between begin_update and end_update
        self._inputs: Any = None
        self._micro: MicroBatches | None = None  # the micro-batches accumulated for the coming step
        self._divided_warned = False
        self._previous_finite = True  # the last fetched step was finite (a non-finite episode starts after it)
        self._closed = False
        self._layers_due = self.schedule.layers.due(0)  # the coming step samples per-layer statistics
        reduce = distributed.step_reducer(model)  # None outside a process group
        self._measure = Measurer(model, optimizer, self.device, reduce)
        self._measure.plain = all(p.dtype == torch.float32 and p.device == self.device for p in self.params)
        writer = None
        log_rank = distributed.is_log_rank()
        if log is not None and log_rank:
            try:
                writer = RunLogWriter(log, framework=f"torch {torch.__version__}", parameters=self.names,
                                      config={"policy": policy_name(policy), "preset": self.preset.name})
            except OSError as e:
                raise ValueError(f"cannot open run log {log}: {e.strerror or e}") from None
        self.session = Session(detectors=detectors, log=writer, exporters=exporters if log_rank else (),
                               framework="torch", step=lambda: self.step_count)
        self._containment = self.session.containment
        self._containment.on_disabled(self._on_part_disabled)
        self._backward: BackwardCounter | None = self._try("backward count", BackwardCounter, self.params)
        if hasattr(model, "_orig_mod"):  # torch.compile'd: adding and removing hooks would force recompilations
            self._containment.switch_off("activation hooks")
        if reduce is not None and distributed.is_sharded(model):
            self._containment.switch_off("layer statistics")  # FSDP: per-tensor statistics of shards are not reduced
        if reduce is not None:  # its own forward on some ranks only could wait forever on a collective
            self._containment.switch_off("non-finite localisation")
        self._effector: TorchEffector | None = None
        self._repairer: Repairer | TorchEffector | None = None  # what runs before each update
        if is_repairer(policy):
            self._repairer = policy
            self.session.start(lambda: UserRepair(policy))
        elif built_policy is not None:
            self._effector = self._repairer = TorchEffector(model, optimizer, scheduler, lambda: self.step_count,
                                                            snapshots="snapshots" in built_policy.needs)
            self.session.start(lambda: PolicyRepair(built_policy, self._effector))
        self._budget: BudgetState | None = None
        # an overhead budget's light steps since the last full one, (step, loss, epoch, batch size, LRs, backward
        # passes, modules in eval mode): the session gets them at the next full step
        self._light: list[tuple[Any, ...]] = []
        self._sentinel: GradientSentinel | None = None  # under the budget with ``safe``: one gradient's hook
        if budget_state is not None:
            self._start_budget(budget_state, policy, reduce)
        if self._layers_due:
            self._try("activation hooks", self._measure.probe.install)

    # ----------------------------------------------------------------- public
    def step(self, loss: torch.Tensor | None = None, batch_size: int | None = None, *, inputs: Any = None,
             targets: Any = None, epoch: int | None = None,
             grad_norm: torch.Tensor | float | None = None) -> tuple[Finding, ...]:
        """Measures this step, applies the update (``optimizer.step()``, or ``scaler.step(optimizer)`` and
        ``scaler.update()`` under AMP, unless a repair policy skips it) and returns the findings raised by the
        statistics fetched during this call. After :meth:`accumulate`, call it without a loss.
        ``grad_norm``: the global gradient norm the loop computed (``clip_grad_norm_``'s return value)."""
        if self._budget is not None:
            return self._budgeted_step(_clock(), loss, batch_size, inputs, targets, epoch, grad_norm)
        apply = self.begin_update(loss, batch_size, inputs=inputs, targets=targets, epoch=epoch, grad_norm=grad_norm)
        if self.scaler is None:
            applied = apply_update(self.optimizer, apply)
        else:
            applied = amp.step_and_update(self.scaler, self.optimizer, apply)
        return self.end_update(applied)

    def accumulate(self, loss: torch.Tensor, batch_size: int | None = None, *, inputs: Any = None,
                   targets: Any = None) -> None:
        """Records one micro-batch of the coming optimizer step (gradient accumulation); :meth:`step` without a
        loss then takes the step. ``loss``: the micro-batch's loss as the loss function returns it (its mean),
        NOT divided by the accumulation steps; the step's loss is the mean over the micro-batches."""
        if self._closed:
            raise RuntimeError("guard.accumulate() called after guard.close()")
        if not isinstance(loss, torch.Tensor):
            loss = _loss_tensor(loss)
        micro = self._micro if self._micro is not None else MicroBatches()
        self._micro = micro
        summarise = self.schedule.data.due(self.step_count) and "data summary" not in self._containment.disabled
        micro.add(loss, batch_size, inputs, targets)
        if summarise:
            self._try("data summary", micro.add_summaries, inputs, targets)
        if inputs is not None and self._read_free and micro.first_nonfinite is None and self._previous_finite:
            self._try("non-finite localisation", self._locate_micro_batch, micro, inputs)

    def begin_update(self, loss: torch.Tensor | None = None, batch_size: int | None = None, *, inputs: Any = None,
                     targets: Any = None, epoch: int | None = None,
                     grad_norm: torch.Tensor | float | None = None) -> bool | torch.Tensor:
        """The first half of :meth:`step`, for a trainer that takes the optimizer step itself: measures the step
        and lets the repair decide (it may clip the gradients or scale the LRs in place). Returns whether to
        apply the update: a bool, or a 0-dim bool tensor on an accelerator (see ``update.apply_update``). The
        caller applies it or not, then calls :meth:`end_update` with what was applied."""
        if self._closed:
            raise RuntimeError("guard.step() called after guard.close()")
        if self._open is not None:
            raise RuntimeError("guard.begin_update() called twice without end_update()")
        micro, self._micro = self._micro, None
        micro_losses = None
        if micro is not None:
            if loss is not None:
                raise ValueError("guard.step(loss): the loss came from guard.accumulate() for each micro-batch; "
                                 "call guard.step() without one")
            if not self._divided_warned and micro.looks_divided():
                self._divided_warned = True
                warnings.warn(f"trainguard: guard.accumulate() was given each micro-batch's loss divided by {len(micro)} "
                              f"(the accumulation steps); pass the loss before that division: the guard averages "
                              f"the micro-batches itself (the losses recorded are {len(micro)}x too small)",
                              RuntimeWarning, stacklevel=3)
            try:
                micro_losses = micro.losses_vector(self.device)
                loss = micro.mean_loss(micro_losses)
            except Exception as e:  # noqa: BLE001 - containment: the step is taken, unmeasured
                self._containment.contain("statistics", e)
                micro_losses, loss = None, micro.losses[-1]
            batch_size = micro.batch_size() if batch_size is None else batch_size
            if inputs is None and targets is None:
                inputs, targets = micro.inputs, micro.targets
        elif loss is None:
            raise TypeError("guard.step() needs the step's loss (or guard.accumulate(loss) for each micro-batch first)")
        elif not isinstance(loss, torch.Tensor):
            loss = _loss_tensor(loss)
        if grad_norm is not None and not isinstance(grad_norm, torch.Tensor):
            grad_norm = _norm_value(grad_norm)
        if self.scaler is not None:
            amp.unscale(self.scaler, self.optimizer)  # the user's own error (unscale_ after step) is theirs
        step = self.step_count
        self._inputs = inputs
        if _groups_changed(self.optimizer, self._groups):
            self._follow_param_groups()
        params = self.params
        grads = [p.grad for p in params]
        every_grad = True
        for g in grads:  # a plain loop: no generator per step
            if g is None:
                every_grad = False
                break
        if not every_grad:
            with_grad = [i for i, g in enumerate(grads) if g is not None]
            params = [params[i] for i in with_grad]
            grads = [grads[i] for i in with_grad]
            names = [self.names[i] for i in with_grad]
        else:
            names = self.names
        disabled = self._containment.disabled
        measure = self._measure

        entry = before = None
        if "statistics" not in disabled:
            try:
                entry = measure.step(step, loss, grads, names, epoch, batch_size, grad_norm)
                self._measure_run(entry, micro, micro_losses)
            except Exception as e:  # noqa: BLE001 - containment
                self._containment.contain("statistics", e)
                entry = None
        if entry is not None and self._layers_due:
            before = self._try("layer statistics", measure.layers, entry, params, grads)
            self._try("activation hooks", measure.activations, entry)
        elif measure.probe.installed:
            measure.probe.remove()
        if entry is not None:
            self._measure_context(entry, step, inputs, targets, micro)
        clip_factor = None if self.clip is None else self._run_clip(entry, params, grads, grad_norm)

        apply: bool | torch.Tensor = True
        if self._repairer is not None and REPAIRER not in disabled:
            try:
                context = self._context(step, loss, grads, params, names, entry, grad_norm, clip_factor)
                context.batch_size = batch_size
                apply = self._repairer.before_update(context)
            except Exception as e:  # noqa: BLE001 - containment: the update is applied as if unguarded
                self._containment.contain(REPAIRER, e)
                apply = True
        self._open = (entry, params, names, before)
        return apply

    def end_update(self, applied: bool | torch.Tensor) -> tuple[Finding, ...]:
        """The second half of :meth:`step`, after the optimizer step was taken (or not: ``applied``): measures
        the update and reads the statistics every ``fetch_every`` steps; returns the findings they raised."""
        if self._open is None:
            return ()
        (entry, params, names, before), self._open = self._open, None
        if entry is not None:
            if isinstance(applied, torch.Tensor):
                entry.applied = None
                entry.add("applied", applied, self.device)
            else:
                entry.applied = applied
            if before is not None:
                self._try("layer statistics", self._measure.after_update, entry, params, names, before)
            self._pending.append(entry)
        self.step_count += 1
        found: tuple[Finding, ...] = ()
        if len(self._pending) >= self.fetch_every or (
                entry is not None and self.fetch_every > 1 and self._read_free
                and (entry.applied is False or self._try("statistics", entry.step_finite) is False)):
            found = self.flush()  # every fetch_every steps; at once, where reading is free, after an incident
        self._sample_next(self.schedule.layers.due(self.step_count))
        return found

    def flush(self) -> tuple[Finding, ...]:
        """Fetches the pending statistics now (one host-device sync), feeds them to the session (detectors,
        run log, repair); returns the findings they raised."""
        if self._open is not None:  # between begin_update and end_update: the update is not measured yet
            return ()
        light = self._feed_light() if self._light else ()
        entries, self._pending = self._pending, []
        if not entries:
            return light
        try:
            fetch(entries)
            # The weights are still those of step i's forward when no update was applied from step i on.
            unchanged, applied_since = [False] * len(entries), False
            for i in range(len(entries) - 1, -1, -1):
                applied_since = applied_since or entries[i].was_applied
                unchanged[i] = not applied_since
        except Exception as e:  # noqa: BLE001 - containment
            self._containment.contain("statistics", e)
            return ()
        found: list[Finding] = list(light)
        for entry, weights_unchanged in zip(entries, unchanged):
            try:
                stats = self._finish(entry, weights_unchanged)
            except Exception as e:  # noqa: BLE001 - containment
                self._containment.contain("statistics", e)
                return tuple(found)
            result = self.session.observe(stats)
            found.extend(result.findings)
            if result.stop is not None:
                self._end("stopped")
                raise TrainingStopped(result.stop, stats.step)
        return tuple(found)

    def record_validation(self, loss: Any = None, *, epoch: int | None = None, **metrics: Any) -> tuple[Finding, ...]:
        """Records an evaluation on held-out data after the steps taken so far: ``loss`` and any metrics by name
        (numbers or one-element tensors), e.g. ``guard.record_validation(val_loss, accuracy=val_acc)``. It goes to
        the run log and the overfitting detector, whose findings it returns."""
        if self._closed:
            raise RuntimeError("guard.record_validation() called after guard.close()")
        record = validation_record(self.step_count, loss, metrics, epoch=epoch)
        self.flush()  # the steps before the evaluation first: the training loss's level at it
        return self.session.validate(record)

    def locate_non_finite(self, inputs: Any) -> str | None:
        """Runs ``model(inputs)`` once more (no grad, nothing changed) and names the first module whose output
        is non-finite, or ``"(inputs)"``; None when everything is finite."""
        return hooks.locate_non_finite(self.model, inputs)

    def _locate(self, inputs: Any) -> str | None:
        """The NaN search on the step's ``inputs=``; when they are not the whole forward call, the search is off
        for the run and the run log says why (an event, not the guard's internal error)."""
        try:
            return hooks.locate_non_finite(self.model, inputs)
        except hooks.InputsDoNotFit as e:
            self._containment.switch_off("non-finite localisation")
            self.session.event("non_finite_localisation_off", self.step_count, reason=str(e))
            return None

    def diagnose(self) -> list[Cause]:
        """The ranked root causes of what went wrong so far: ``.code``, ``.confidence``, ``.evidence`` and
        ``.fix`` (a PyTorch snippet ending with its docs/causes.md link); ``[]`` for a healthy run.

        Reads the pending statistics first, then diagnoses the kept ``history`` with every finding. An error
        in the diagnosis is the guard's own: it is contained like any other and gives ``[]``."""
        if not self._closed:
            self.flush()
        return self.session.diagnose()

    def close(self, status: str = "ok") -> None:
        """Reads the pending statistics, removes the hooks, hands out the open actions, writes the diagnosis and
        closes the run log."""
        if self._closed:
            return
        self._open = None
        try:
            self.flush()  # may end the run "stopped" and raise TrainingStopped
        finally:
            if not self._closed:
                self._end(status)

    def _end(self, status: str) -> None:
        self._closed = True
        self._measure.probe.remove()
        if self._backward is not None:
            self._backward.remove()
        if self._sentinel is not None:
            self._sentinel.remove()
        self.session.close(status, self.step_count)
        if self._effector is not None:
            self._effector.release()

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close("ok")
        else:
            self.close("interrupted" if issubclass(exc_type, KeyboardInterrupt) else "error")

    # ------------------------------------------------------------------ budget
    def _start_budget(self, state: BudgetState, policy: Any, reduce: Any) -> None:
        """``Guard(budget=...)`` (checked by ``budget_init``): where it cannot apply, every step is full and the run
        log says why."""
        off = None
        if not (isinstance(policy, str) and policy in ("observe", "safe")):
            off = f"policy {policy_name(policy)!r} acts on every step's statistics"
        elif not self._on_cpu:
            off = "on an accelerator the every-step statistics stay on the device and are read every fetch_every steps"
        elif self.fetch_every != 1:
            off = "fetch_every > 1 batches the host's work already"
        elif self.scaler is not None or self.clip is not None or reduce is not None:
            off = "scaler=, clip= and torch.distributed need every step's gradients"
        if off is not None:
            self.session.event("overhead_budget_off", 0, budget=state.share, reason=off)
            return
        self._budget = state
        self._light_left = 0  # light steps before the next full one
        self._light_self = 0.0  # their self-time, in seconds
        # ``safe`` skips a non-finite step: a light step asks one gradient's hook (``observe`` never acts, and sees
        # a NaN gradient in the next step's loss)
        self._sentinel = self._try("gradient sentinel", GradientSentinel, self.params) if policy == "safe" else None
        self._plan_s = 0.0  # the time the budget's plan after the last full step took
        self._layers_next = False  # the next full step takes the per-layer statistics
        self._last_full: tuple[float, float] | None = None  # the last full step's (start, self-time)

    def _budgeted_step(self, start: float, loss: Any, batch_size: int | None, inputs: Any, targets: Any,
                       epoch: int | None, grad_norm: Any) -> tuple[Finding, ...]:
        """:meth:`step` under an overhead budget (:mod:`trainguard.core.budget`), timed in this thread's CPU time
        from ``start`` (read first thing in :meth:`step`).

        A light step reads the loss, steps the optimizer and counts the step: no gradient norm, per-layer
        statistics, detector or policy. Its loss (with the LRs, the batch size, the epoch, the backward passes
        counted and, when due, the modules' train/eval modes) is handed to the session's light path at the next
        full step, or at ``flush``: the run log and the detectors that read those alone (spikes, divergence,
        plateaus, a loss against its batch size, an accumulation group spilling into the next, a BatchNorm left in
        eval mode), so those judge every step, at most ``cap - 1`` steps late, in one batch. A non-finite loss
        makes the step a full one at once (the ``safe`` policy skips it, the NaN search runs), and so is every
        step for ``cap`` steps after any sign of trouble (a finding of any severity, a skipped step, an action),
        the first of them with the per-layer statistics. Under ``safe``, a non-finite gradient behind a finite
        loss is caught through one hook (``sentinel.py``) on the first small parameter in forward order, which
        every backward path of a sequential network reaches; one that does not reach it (a branch), and a
        gradient-norm outlier to clip, are seen at the next full step."""
        nonfinite = False
        if (self._light_left and grad_norm is None and self._micro is None and isinstance(loss, torch.Tensor)
                and loss.numel() == 1 and not self._closed):
            value = loss.item()
            nonfinite = not math.isfinite(value) or (self._sentinel is not None and self._sentinel.take())
            if not nonfinite and not _groups_changed(self.optimizer, self._groups):
                step = self.step_count
                # a plain tuple now, the StepStats in the warm batch of ``_feed_light``
                self._light.append((step, value, epoch, batch_size, host_lrs(self.optimizer),
                                    self._backward.take() if self._backward is not None else None,
                                    eval_mode_modules(self._measure.mode_modules)
                                    if self.schedule.modes.due(step) else None))
                before = _clock()
                self.optimizer.step()
                after = _clock()
                self.step_count += 1
                self._light_left -= 1
                if not self._light_left:
                    self._sample_next(self._layers_next)
                self._light_self += (before - start) + (_clock() - after)
                return ()
        kind = "layers" if self._layers_due else "full"
        lights = len(self._light)
        if self._sentinel is not None:
            self._sentinel.take()  # this step's gradients are measured in full
        actions = len(self.session.actions)
        apply = self.begin_update(loss, batch_size, inputs=inputs, targets=targets, epoch=epoch, grad_norm=grad_norm)
        before = _clock()
        applied = apply_update(self.optimizer, apply)
        optimizer_s = _clock() - before
        found = self.end_update(applied)
        # any finding (the light steps' among them), a skip or an action: every step full for ``cap`` steps, and
        # the per-layer statistics at the next one, so the diagnosis has its evidence from when the symptom showed
        trouble = nonfinite or applied is not True or len(self.session.actions) != actions or bool(found)
        try:
            planned = _clock()
            self._plan_after_full(kind, planned - start - optimizer_s + self._plan_s, start, lights, trouble)
            self._plan_s = _clock() - planned  # the plan's own time, counted with the next full step
        except Exception as e:  # noqa: BLE001 - containment: every step full from now on
            self._budget = None
            self._layers_due = self.schedule.layers.due(self.step_count)
            self._containment.contain("overhead budget", e, self.step_count)
        return found

    def _plan_after_full(self, kind: str, self_s: float, start: float, lights: int, trouble: bool) -> None:
        """The budget's update with the times of the ``lights`` light steps before and of this full step; how
        many light steps follow."""
        state = before = self._budget
        step_s = None
        if self._last_full is not None:  # the bare time of the last full step and the light ones since
            last_start, last_self = self._last_full
            step_s = (start - last_start - last_self - self._light_self) / (lights + 1)
        if lights:
            state = budget_update(state, "light", self._light_self / lights, step_s, count=lights)
        state = budget_update(state, kind, self_s, step_s, trouble)
        self._budget, self._last_full, self._light_self = state, (start, self_s), 0.0
        if state.stride != before.stride:
            self.session.event("overhead_budget", self.step_count, stride=state.stride,
                               step_ms=1e3 * (state.step_s or 0.0), full_us=1e6 * (state.full_s or 0.0),
                               light_us=1e6 * state.light_s, layers_extra_us=1e6 * state.layers_extra_s)
        self._light_left = light_steps(state)
        self._layers_next = (self.schedule.layers.due(self.step_count + self._light_left)
                             if self.step_count + self._light_left < self.preset.forensic_steps
                             else (trouble and kind != "layers") or layers_due(state))
        self._sample_next(not self._light_left and self._layers_next)

    def _feed_light(self) -> tuple[Finding, ...]:
        """The light steps' losses to the session (see :meth:`_budgeted_step`); returns their findings."""
        light, self._light = self._light, []
        return self.session.observe_light([
            StepStats(step=step, loss=loss, epoch=epoch, batch_size=batch_size, lrs=lrs or (),
                      backward_passes=passes, eval_mode_modules=modes, light=True)
            for step, loss, epoch, batch_size, lrs, passes, modes in light])

    # --------------------------------------------------------------- measuring
    def _sample_next(self, layers: bool) -> None:
        """Whether the next step takes the per-layer statistics: their probe is in its forward, or out of it (a
        sampled step's probe is not left recording the next, unsampled forward). ``end_update`` decides by the
        preset's cadence, an overhead budget by its own."""
        self._layers_due = layers
        if layers and "statistics" not in self._containment.disabled:
            self._try("activation hooks", self._measure.probe.install)
        elif not layers and self._measure.probe.installed:
            self._measure.probe.remove()

    def _follow_param_groups(self) -> None:
        """``optimizer.add_param_group`` since the last step: watch (and repair) the new parameters too."""
        self.params, self.names = _named_parameters(self._named_model, self.optimizer)
        self._groups = _groups_shape(self.optimizer)
        if self._sentinel is not None:
            self._sentinel.remove()
            self._sentinel = self._try("gradient sentinel", GradientSentinel, self.params)
        self._measure.plain = all(p.dtype == torch.float32 and p.device == self.device for p in self.params)
        if self._effector is not None:
            self._effector.forget_snapshots()
        self.session.event("param_groups_changed", self.step_count, parameters=self.names)

    def _measure_run(self, entry: PendingStep, micro: MicroBatches | None, micro_losses: torch.Tensor | None) -> None:
        """What the loop told the guard of its step: the clip cap, the AMP scaler, the micro-batches."""
        entry.clip_max_norm = self.clip
        if self._backward is not None:  # the loop's own accumulation, told or not
            entry.backward_passes = self._backward.take()
        if self.scaler is not None:
            scaler = amp.overflow_and_scale(self.scaler, self.optimizer, self.device)
            if scaler is not None:
                entry.add("scaler", scaler, self.device)
        if micro is not None and micro_losses is not None:
            entry.micro_batches = len(micro)
            entry.add("micro_losses", micro_losses, self.device)
            if micro.first_nonfinite is not None:
                entry.located = True
                entry.first_nonfinite_micro_batch = micro.first_nonfinite
                entry.first_nonfinite_module = micro.first_nonfinite_module

    def _run_clip(self, entry: PendingStep | None, params: list[nn.Parameter], grads: list[torch.Tensor],
                  grad_norm: torch.Tensor | None) -> torch.Tensor | None:
        """The run's own clipping (``Guard(clip=...)``): the factor the gradients were or are now scaled by,
        ``min(1, max_norm / (norm + 1e-6))`` as ``clip_grad_norm_`` computes it; None when the run does not clip.
        Without ``grad_norm`` the guard clips here, with the norm it measured (one pass, not two); this is the
        run's own arithmetic, so it is not contained: a failure would change the run."""
        if self.clip is None or not grads:
            return None
        if grad_norm is not None:
            return torch.clamp(self.clip / (grad_norm.to(self.device).float() + 1e-6), max=1.0)
        vector = entry.pieces.get("step") if entry is not None and not entry.given_norm else None
        clip_with_norm = getattr(torch.nn.utils, "clip_grads_with_norm_", None)  # torch >= 2.6
        if clip_with_norm is None:
            total = torch.nn.utils.clip_grad_norm_(params, self.clip)
        else:
            if vector is not None and self._measure.plain:
                total = torch.linalg.vector_norm(vector[1:])
            else:  # statistics off, or gradients of other dtypes: torch's own norm, as clip_grad_norm_ takes it
                total = torch.nn.utils.get_total_norm(grads)
            clip_with_norm(params, self.clip, total)
        return torch.clamp(self.clip / (total.to(self.device).float() + 1e-6), max=1.0)

    def _measure_context(self, entry: PendingStep, step: int, inputs: Any, targets: Any,
                         micro: MicroBatches | None = None) -> None:
        """What the schedule asks of this step besides the gradients: data, forensics, modes, a NaN's origin."""
        plan = self.schedule
        if plan.data.due(step):
            self._try("data summary", self._measure.data, entry, inputs, targets, micro)
        if plan.forensic.due(step):
            self._try("forensic recording", self._measure.forensics, entry, inputs, targets)
        if plan.modes.due(step):
            entry.eval_mode_modules = eval_mode_modules(self._measure.mode_modules)
        if (inputs is not None and self._read_free and self._previous_finite and not entry.located
                and "non-finite localisation" not in self._containment.disabled):
            # CPU: reading the step's values is free, so a NaN is located now, with the weights that made it.
            try:  # contained as by _try (the part is on, checked above), one call less on every step
                self._locate_now(entry, inputs)
            except Exception as e:  # noqa: BLE001 - containment
                self._containment.contain("non-finite localisation", e)

    def _locate_now(self, entry: PendingStep, inputs: Any) -> None:
        if not entry.step_finite() and not entry.routine_overflow():
            entry.located = True
            entry.first_nonfinite_module = self._locate(inputs)

    def _locate_micro_batch(self, micro: MicroBatches, inputs: Any) -> None:
        """CPU: a micro-batch whose loss is non-finite is located now, with its own inputs and the weights of
        its forward (unchanged until the optimizer step)."""
        if not math.isfinite(micro.losses[-1].item()):
            micro.first_nonfinite = len(micro) - 1
            micro.first_nonfinite_module = self._locate(inputs)

    def _context(self, step: int, loss: torch.Tensor, grads: list[torch.Tensor], params: list[nn.Parameter],
                 names: list[str], entry: PendingStep | None, grad_norm: torch.Tensor | None,
                 clip_factor: torch.Tensor | None) -> StepContext:
        """What the repairer sees: the gradients as they are now, i.e. after the run's own clipping."""
        vector = entry.pieces.get("step") if entry is not None else None
        host = None
        if vector is None:  # statistics off
            if grad_norm is not None:
                vector = collect.given_norm_vector(loss, grad_norm, self.device)
            else:
                vector = collect.step_vector(loss, grads, self.device, self._measure.plain)
        if clip_factor is not None:
            vector = torch.cat([vector[:1], vector[1:] * clip_factor])
            if self._on_cpu:
                host = vector.tolist()
        elif entry is not None and self._on_cpu:  # a free read, spares the repairer two kernels
            host = entry.prefetch("step")
        return StepContext(step=step, loss=loss.detach(), vector=vector, params=list(params), names=list(names),
                           host=host)

    def _finish(self, entry: PendingStep, weights_unchanged: bool) -> StepStats:
        """Turns fetched values into StepStats.

        At the onset of a non-finite episode that could not be located before its update (deferred fetch), the
        search runs now only if it can still be faithful: no update has been applied since that step (a repair
        skipped them), so the weights are those of its forward; it runs on the inputs of the step now being
        taken. Otherwise ``first_nonfinite_module`` stays None (``first_nonfinite_grad`` still names a layer,
        and ``guard.locate_non_finite(inputs)`` can be asked by hand)."""
        finite = all_finite(entry.values.get("step", ())) or entry.routine_overflow()
        if (not finite and self._previous_finite and not entry.located and weights_unchanged
                and self._inputs is not None):
            entry.located = True
            entry.first_nonfinite_module = self._try("non-finite localisation", self._locate, self._inputs)
        self._previous_finite = finite
        return entry.build()

    # ------------------------------------------------------------- containment
    def _try(self, part: str, fn: Any, *args: Any) -> Any:
        return self._containment.run(part, fn, *args)

    def _on_part_disabled(self, part: str) -> None:
        if part == "activation hooks":
            self._measure.probe.remove()


# The budget's clock: this thread's CPU time, as benchmarks/guard_overhead measures: a neighbour's turn on a
# shared machine (a few ms at a time) counts neither as the guard's time nor as the step's.
_clock = time.thread_time


def _check_clip(clip: Any) -> float | None:
    if clip is None:
        return None
    if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not (0 < clip < math.inf):
        raise ValueError(f"Guard(clip=...) takes the max_norm of the run's gradient clipping (a positive number), "
                         f"got {clip!r}")
    return float(clip)


def _norm_value(grad_norm: Any) -> torch.Tensor:
    if isinstance(grad_norm, bool) or not isinstance(grad_norm, (int, float)):
        raise TypeError(f"guard.step(grad_norm=...) takes the norm clip_grad_norm_ returned (a tensor or a number), "
                        f"got {type(grad_norm).__name__}")
    return torch.tensor(float(grad_norm))


def _loss_tensor(loss: Any) -> torch.Tensor:
    """A Python number as the step's loss; anything else is the caller's mistake, said in one line."""
    if isinstance(loss, bool) or not isinstance(loss, (int, float)) and not hasattr(loss, "__float__"):
        raise TypeError(f"guard.step(loss) takes the loss tensor (or a number), got {type(loss).__name__}")
    return torch.tensor(float(loss))
