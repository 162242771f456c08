"""HF Transformers: ``trainguard.hf.Guard``, a ``TrainerCallback`` with the plain guard's statistics, policies and
run log.

>>> trainer = transformers.Trainer(model, args, train_dataset=data,
...                                callbacks=[trainguard.hf.Guard(log="runs/exp.jsonl")])  # doctest: +SKIP

It works through the Trainer's own callback events, once per optimizer step (not per micro-batch):

- a forward hook records the loss the model returns (``outputs["loss"]``, as ``Trainer.compute_loss`` reads it)
  and the inputs of each training forward. The step's loss is the one the Trainer logs: when the model was given
  ``num_items_in_batch`` (the Trainer passes it to a model whose forward takes ``**kwargs``), each micro-batch's
  loss is already its share of the step's mean, and the step's loss is their sum; otherwise each is its own
  micro-batch's mean (the Trainer divides it by the accumulation steps), and the step's loss is their mean. It is torch's
  global module forward hook, keyed by the model's identity, so nothing of trainguard sits on the model: a deep
  copy (an EMA model) or ``torch.save(model)`` during training carries no trainguard hook;
- ``on_pre_optimizer_step``: the Trainer calls it after accelerate's ``clip_grad_norm_``, which unscales AMP
  gradients first (the guard unscales them itself where a Trainer did not), so the gradients are unscaled; they
  are also already clipped when ``max_grad_norm > 0`` (the Trainer's default is 1.0), so the guard's gradient norm
  is the clipped one (see docs/integrations.md).
  The policy decides there (see :mod:`trainguard.adapters.torch.integrations.trainer_step`): clip in place, scale the LRs for
  this step, or skip it by setting the gradients to None so the Trainer's ``optimizer.step()`` changes nothing;
- ``on_optimizer_step``: the update is measured and the statistics read, which feeds the detectors, the run log
  and the policy's rollback / LR / stop orders;
- ``on_evaluate``: the evaluation's ``eval_loss`` and metrics (``eval_accuracy`` -> ``accuracy``; not its timings)
  are recorded as a validation result (run log, overfitting detector);
- a stop ordered by the policy sets ``control.should_training_stop`` (the diagnosis is in ``stopped``).

Needs the ``hf`` extra (``pip install 'trainguard[hf]'``). See docs/integrations.md.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import torch

try:
    import transformers
    from transformers import TrainerCallback
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("trainguard.hf needs Transformers: pip install 'trainguard[hf]'") from e

from trainguard.adapters.torch.integrations.options import GuardOptions, TrainerGuardResults
from trainguard.adapters.torch.integrations.trainer_step import TrainerStepGuard, batch_length
from trainguard.core.policies import TrainingStopped
from trainguard.core.validation import held_out_results

__all__ = ["Guard"]

_EVAL = "eval_"  # the Trainer's prefix of evaluation metrics
_NOT_METRICS = ("_runtime", "_per_second", "_model_preparation_time")  # the evaluation's timings


def _output_loss(output: Any) -> torch.Tensor | None:
    loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
    return loss if isinstance(loss, torch.Tensor) else None


def _unscale(optimizer: Any) -> None:
    """Unscales fp16 AMP gradients if the Trainer has not yet (it does in ``clip_grad_norm_``; older versions
    only when ``max_grad_norm > 0``). GradScaler records the inf check, so its ``step`` still skips on overflow."""
    scaler = getattr(optimizer, "scaler", None)
    if scaler is None or not scaler.is_enabled():
        return
    try:
        scaler.unscale_(optimizer.optimizer)
    except RuntimeError as e:  # already unscaled since the last update: what we want
        if "already been called" not in str(e):
            raise


class Guard(TrainerGuardResults, TrainerCallback):
    """Watches (and by default repairs) a ``transformers.Trainer`` run.

    Args: as :class:`trainguard.Guard` (``policy``, ``log``, ``preset``, ``detectors``, ``fetch_every``,
    ``exporters``); the model, its optimizer and LR scheduler are taken from the Trainer when training begins.
    """

    def __init__(self, policy: Any = "safe", log: Any = None, preset: Any = "standard", *, detectors: Any = None,
                 fetch_every: int | None = None, exporters: Any = ()):
        # checked now, not mid-fit
        TrainerGuardResults.__init__(self, GuardOptions(policy, log, preset, detectors, fetch_every, exporters))
        self._hook: Any = None
        self._model: Any = None
        self._missing_loss_reported = False
        self._reset_accumulation()

    # -------------------------------------------------------------------- events
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None,
                       lr_scheduler: Any = None, **kwargs: Any) -> None:
        # accelerate wraps the optimizer; the torch optimizer inside holds the param groups and the step hooks
        optimizer = getattr(optimizer, "optimizer", optimizer)
        self.guard = TrainerStepGuard(model, optimizer, self.options, scheduler=lr_scheduler)
        self.guard.event("integration", 0, name="transformers", version=transformers.__version__,
                         gradient_accumulation_steps=args.gradient_accumulation_steps,
                         max_grad_norm=args.max_grad_norm, fp16=args.fp16, bf16=args.bf16)
        self.stopped = None
        self._reset_accumulation()
        self._model = model
        self._hook = torch.nn.modules.module.register_module_forward_hook(self._record_forward, with_kwargs=True)

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self._active:
            return
        losses, shares, batch_size = self._losses, self._shares, self._batch_size
        inputs, targets = self._inputs, self._targets
        self._reset_accumulation()
        if not losses:
            if not self._missing_loss_reported:
                self._missing_loss_reported = True
                warnings.warn("trainguard.hf.Guard: the model's outputs carry no 'loss' (a custom compute_loss?); "
                              "these steps are not guarded", RuntimeWarning, stacklevel=2)
            return
        losses = torch.stack([loss.float() for loss in losses])
        loss = losses.sum() if shares else losses.mean()
        _unscale(kwargs.get("optimizer"))
        self.guard.before_update(loss, batch_size, inputs=inputs, targets=targets, epoch=int(state.epoch or 0))

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._active:
            try:
                self.guard.after_update()
            except TrainingStopped as stop:
                self._stop(control, stop)

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
        if not self._active or not metrics:
            return
        loss, values = held_out_results(metrics, (_EVAL,), skip_suffixes=_NOT_METRICS)
        try:
            # state.epoch counts the epochs done (1.0 after the first): the evaluation closes epoch ceil - 1
            epoch = max(0, math.ceil(state.epoch or 0) - 1)
            self.guard.record_validation(loss, values, epoch=epoch)
        except TrainingStopped as stop:
            self._stop(control, stop)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self.guard is not None and not self.guard.closed:
            try:
                self.guard.flush()
            except TrainingStopped as stop:
                self._stop(control, stop)
            self.guard.close("ok")

    # ------------------------------------------------------------------ helpers
    @property
    def _active(self) -> bool:
        return self.guard is not None and not self.guard.closed

    def _record_forward(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        """A training forward of the model (grad enabled, train mode): keep its loss and its inputs."""
        if module is not self._model or not (module.training and torch.is_grad_enabled() and self._active):
            return
        loss = _output_loss(output)
        if loss is None:
            return
        self._losses.append(loss.detach())
        self._shares = self._shares or kwargs.get("num_items_in_batch") is not None
        inputs = dict(kwargs) if kwargs else args
        self._inputs, self._targets = inputs, kwargs.get("labels")
        n = batch_length(inputs)
        self._batch_size = None if n is None or self._batch_size is None else self._batch_size + n

    def _reset_accumulation(self) -> None:
        self._losses: list[torch.Tensor] = []
        self._shares = False  # the losses are shares of the step's mean (the model was given num_items_in_batch)
        self._batch_size: int | None = 0
        self._inputs: Any = None
        self._targets: Any = None

    def _stop(self, control: Any, stop: TrainingStopped) -> None:
        self.stopped = stop
        control.should_training_stop = True
        warnings.warn(f"trainguard stopped training at step {stop.step}: {stop.diagnosis}", RuntimeWarning,
                      stacklevel=2)
