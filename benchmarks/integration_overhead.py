"""Lightning fit with and without ``trainguard.lightning.Guard``: wall time per optimizer step.

``python -m benchmarks.integration_overhead [--steps N] [--repeats R]``: MLP 784-512-512-10, batch 128, SGD
momentum, CPU, 1 thread; bare and guarded fits alternate, R times each; the median of each is reported.
The guard is the torch guard (``benchmarks.guard_overhead`` measures its own cost); this adds the Lightning hooks.
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

__all__ = ["main"]


def _fit(steps: int, guarded: bool) -> float:
    import lightning as L
    import torch
    from torch import nn

    import trainguard.lightning

    class Classifier(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                                     nn.Linear(512, 10))

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)

    torch.manual_seed(0)
    x, y = torch.randn(steps * 128, 784), torch.randint(0, 10, (steps * 128,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=128)
    callbacks = [trainguard.lightning.Guard()] if guarded else []
    trainer = L.Trainer(max_epochs=1, callbacks=callbacks, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1)
    start = time.perf_counter()
    trainer.fit(Classifier(), loader)
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> int:
    try:
        import lightning  # noqa: F401
    except ImportError:
        print("lightning not installed: skipped (pip install 'trainguard[lightning]')")
        return 0
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    times: dict[bool, list[float]] = {False: [], True: []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _fit(10, True)  # warm-up: imports, first-call costs
        for _ in range(args.repeats):
            for guarded in (False, True):
                times[guarded].append(_fit(args.steps, guarded))
    bare, guarded = statistics.median(times[False]), statistics.median(times[True])
    print(f"Lightning fit, {args.steps} steps x {args.repeats}: bare {bare * 1e3:.2f} ms/step, "
          f"guarded {guarded * 1e3:.2f} ms/step ({guarded / bare:.3f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
