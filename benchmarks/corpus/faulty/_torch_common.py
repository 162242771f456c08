"""Data makers and measures shared by the PyTorch-loop and Lightning faulty cases. Every data set is generated in
the program from a fixed seed (nothing is downloaded), shaped like the data of the report it stands in for."""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["tail_mean", "minibatches", "pattern_images", "sine_sequences", "token_corpus", "HalfConv2d",
           "HalfLinear"]


def tail_mean(losses: Sequence[float], fraction: float = 0.1) -> float:
    """Mean of the last ``fraction`` of the losses; NaN when any of them is not finite (a run that went NaN)."""
    tail = list(losses[-max(1, int(len(losses) * fraction)):])
    if not all(math.isfinite(v) for v in tail):
        return math.nan
    return float(sum(tail) / len(tail))


def minibatches(arrays: Sequence[np.ndarray], batch_size: int, epochs: int, seed: int, shuffle: bool = True,
                drop_last: bool = False) -> Iterator[tuple[torch.Tensor, ...]]:
    """What a ``DataLoader(TensorDataset(*arrays), batch_size, shuffle, drop_last)`` yields over ``epochs`` epochs,
    from a fixed seed: the last batch of an epoch is partial unless ``drop_last``."""
    rng = np.random.default_rng(seed)
    n = len(arrays[0])
    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(n)) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            idx = order[start:start + batch_size]
            yield tuple(t[idx] for t in tensors)


def pattern_images(n: int, classes: int, seed: int, size: int = 16, channels: int = 1,
                   noise: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Image-like tensors (N, C, size, size) with values in 0..255, as an image loader without ``ToTensor`` gives
    them: class-specific smooth templates, shifted by up to 2 pixels, with pixel noise."""
    rng = np.random.default_rng(seed)
    coords = np.linspace(-1.0, 1.0, size + 4)
    gx, gy = np.meshgrid(coords, coords)
    templates = []
    for _ in range(classes):
        img = np.zeros((channels, size + 4, size + 4))
        for _blob in range(3):
            cx, cy, s = rng.uniform(-0.7, 0.7), rng.uniform(-0.7, 0.7), rng.uniform(0.15, 0.4)
            img += rng.normal(size=(channels, 1, 1)) * np.exp(-((gx - cx) ** 2 + (gy - cy) ** 2) / (2 * s * s))
        templates.append(img)
    y = rng.integers(0, classes, n)
    x = np.empty((n, channels, size, size))
    shifts = rng.integers(0, 5, size=(n, 2))
    for i in range(n):
        dx, dy = shifts[i]
        x[i] = templates[y[i]][:, dy:dy + size, dx:dx + size]
    x += noise * rng.normal(size=x.shape)
    x = (x - x.min()) / (x.max() - x.min()) * 255.0
    return x.astype(np.float32), y.astype(np.int64)


def sine_sequences(n: int, length: int, seed: int) -> np.ndarray:
    """(n, length) noisy sines of random frequency and phase: sequence-model inputs of scale ~1."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    freq = rng.uniform(0.05, 0.3, size=(n, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    return (np.sin(freq * t + phase) + 0.05 * rng.normal(size=(n, length))).astype(np.float32)


def token_corpus(n_tokens: int, vocab: int, seed: int, order: int = 2) -> np.ndarray:
    """A token stream from a random sparse Markov chain of ``order`` previous tokens: text a small language model
    can learn well below the uniform loss ln(vocab), and memorize when the stream is short."""
    rng = np.random.default_rng(seed)
    table = rng.dirichlet(np.full(vocab, 0.1), size=(vocab,) * order)
    out = list(rng.integers(0, vocab, order))
    for _ in range(n_tokens - order):
        p = table[tuple(out[-order:])]
        out.append(int(rng.choice(vocab, p=p)))
    return np.asarray(out, dtype=np.int64)


class HalfConv2d(nn.Conv2d):
    """A float16 convolution computed in float32 from its float16 weights (a CPU float16 convolution is ~100x
    slower); parameters, gradients and the optimizer's state stay float16."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(x.float(), self.weight.float(), self.bias.float(), padding=self.padding).half()


class HalfLinear(nn.Linear):
    """A float16 linear layer computed in float32, as :class:`HalfConv2d`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x.float(), self.weight.float(), self.bias.float()).half()
