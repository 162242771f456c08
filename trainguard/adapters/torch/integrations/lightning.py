"""Lightning: ``trainguard.lightning.Guard``, a callback with the plain guard's statistics, policies and run log.

>>> trainer = lightning.Trainer(callbacks=[trainguard.lightning.Guard(log="runs/exp.jsonl")])  # doctest: +SKIP

It works through Lightning's own hooks, once per optimizer step (not per micro-batch):

- ``on_before_backward``: the loss of each micro-batch (divided by the AMP scale under ``precision="16-mixed"``).
  Lightning has divided it by ``accumulate_grad_batches`` (under automatic optimization), also in the last,
  partial step of an epoch; the step's loss is the mean of the micro-batch losses multiplied back, so a partial step
  is not recorded as a fraction of its loss;
- ``on_before_optimizer_step``: Lightning calls it after the AMP scaler's ``unscale_`` and before its own
  gradient clipping (``gradient_clip_val``), so the guard measures the unscaled, unclipped gradients, and the
  policy decides there (see :mod:`trainguard.adapters.torch.integrations.trainer_step`): clip in place, scale the LRs for
  this step, or skip it by setting the gradients to None so Lightning's optimizer step leaves the weights and the
  optimizer state untouched;
- ``on_train_batch_end`` (after the optimizer step): the update is measured and the statistics read, which
  feeds the detectors, the run log and the policy's rollback / LR / stop orders;
- ``on_validation_end`` (not during the sanity check): the validation metrics logged (``val_loss`` or
  ``val/loss``, ``validation_loss``...; ``val_acc`` -> ``acc``) are recorded as a validation result (run log,
  overfitting detector);
- a stop ordered by the policy sets ``trainer.should_stop`` (the diagnosis is in ``stopped`` and the run log).

Needs the ``lightning`` extra (``pip install 'trainguard[lightning]'``). See docs/integrations.md.
"""
from __future__ import annotations

import warnings
from typing import Any

import torch

try:
    import lightning as L
    from lightning.pytorch.callbacks import Callback
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("trainguard.lightning needs Lightning: pip install 'trainguard[lightning]'") from e

from trainguard.adapters.torch.integrations.options import GuardOptions, TrainerGuardResults
from trainguard.adapters.torch.integrations.trainer_step import TrainerStepGuard, batch_length, split_batch
from trainguard.core.policies import TrainingStopped
from trainguard.core.validation import held_out_results

__all__ = ["Guard"]

# How LightningModules name what they log in validation_step (Lightning's own examples use "val_loss").
_VALIDATION_PREFIXES = ("val_", "val/", "valid_", "valid/", "validation_", "validation/")
_LOSS_NAMES = ("loss", "loss_epoch")


class Guard(TrainerGuardResults, Callback):
    """Watches (and by default repairs) a Lightning ``Trainer.fit``.

    Args: as :class:`trainguard.Guard` (``policy``, ``log``, ``preset``, ``detectors``, ``fetch_every``,
    ``exporters``); the model, its optimizer and LR scheduler are taken from the trainer when training starts.
    """

    def __init__(self, policy: Any = "safe", log: Any = None, preset: Any = "standard", *, detectors: Any = None,
                 fetch_every: int | None = None, exporters: Any = ()):
        # checked now, not mid-fit
        TrainerGuardResults.__init__(self, GuardOptions(policy, log, preset, detectors, fetch_every, exporters))
        self._reset_accumulation()

    # -------------------------------------------------------------------- hooks
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if len(trainer.optimizers) != 1:
            raise ValueError(f"trainguard.lightning.Guard watches one optimizer; this module configures "
                             f"{len(trainer.optimizers)}")
        configs = trainer.lr_scheduler_configs
        scheduler = configs[0].scheduler if configs else None
        self.guard = TrainerStepGuard(pl_module, trainer.optimizers[0], self.options, scheduler=scheduler)
        self.guard.event("integration", 0, name="lightning", version=L.__version__,
                         accumulate_grad_batches=trainer.accumulate_grad_batches,
                         gradient_clip_val=trainer.gradient_clip_val, precision=str(trainer.precision))
        self.stopped = None
        self._reset_accumulation()

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if not self._active:
            return
        self._inputs, self._targets = split_batch(batch)
        n = batch_length(self._inputs)
        self._batch_size = None if n is None or self._batch_size is None else self._batch_size + n

    def on_before_backward(self, trainer: Any, pl_module: Any, loss: torch.Tensor) -> None:
        if not self._active:
            return
        loss = loss.detach()
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        if scaler is not None and scaler.is_enabled():  # the loss arrives already multiplied by the AMP scale
            scale = getattr(scaler, "_scale", None)
            loss = loss / (scale if isinstance(scale, torch.Tensor) else scaler.get_scale())
        self._loss = loss if self._loss is None else self._loss + loss
        self._micro_batches += 1

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if not self._active or self._loss is None:
            return
        loss, batch_size, inputs, targets = self._loss, self._batch_size, self._inputs, self._targets
        normalised = trainer.accumulate_grad_batches if pl_module.automatic_optimization else 1
        if normalised != self._micro_batches:  # a partial step: undo Lightning's division by the full count
            loss = loss * (normalised / self._micro_batches)
        self._reset_accumulation()
        self.guard.before_update(loss, batch_size, inputs=inputs, targets=targets, epoch=trainer.current_epoch)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._active:
            try:
                self.guard.after_update()
            except TrainingStopped as stop:
                self._stop(trainer, stop)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if not self._active or trainer.sanity_checking:
            return
        loss, values = held_out_results(trainer.callback_metrics, _VALIDATION_PREFIXES, _LOSS_NAMES)
        try:
            self.guard.record_validation(loss, values, epoch=trainer.current_epoch)
        except TrainingStopped as stop:
            self._stop(trainer, stop)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.guard is not None and not self.guard.closed:
            try:
                self.guard.flush()
            except TrainingStopped as stop:
                self._stop(trainer, stop)
            self.guard.close("ok")

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if self.guard is not None and not self.guard.closed:
            self.guard.close("interrupted" if isinstance(exception, KeyboardInterrupt) else "error")

    # ------------------------------------------------------------------ helpers
    @property
    def _active(self) -> bool:
        return self.guard is not None and not self.guard.closed

    def _reset_accumulation(self) -> None:
        self._loss: torch.Tensor | None = None
        self._micro_batches = 0
        self._batch_size: int | None = 0
        self._inputs = self._targets = None

    def _stop(self, trainer: Any, stop: TrainingStopped) -> None:
        self.stopped = stop
        trainer.should_stop = True
        warnings.warn(f"trainguard stopped training at step {stop.step}: {stop.diagnosis}", RuntimeWarning,
                      stacklevel=2)
