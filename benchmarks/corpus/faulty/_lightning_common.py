"""The Lightning faulty cases' trainer: CPU, one device, Lightning's own ``CSVLogger`` in the run's directory (the
native log the doctor reads), a row every step, no progress bar, summary or checkpoint."""
from __future__ import annotations

import warnings
from typing import Any

from benchmarks.corpus.case import RunContext


def fit_on_cpu(ctx: RunContext, model: Any, *loaders: Any, max_steps: int, callbacks: list | None = None,
               **trainer_options: Any) -> None:
    """``Trainer(...).fit(model, *loaders)`` with the guard's callbacks (``ctx.lightning_callbacks()`` unless
    ``callbacks`` are given); ``trainer_options`` go to the Trainer as they are."""
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger

    trainer = pl.Trainer(max_steps=max_steps, accelerator="cpu", devices=1, logger=CSVLogger(save_dir=ctx.outdir),
                         callbacks=ctx.lightning_callbacks() if callbacks is None else callbacks,
                         log_every_n_steps=1, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, **trainer_options)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        trainer.fit(model, *loaders)
