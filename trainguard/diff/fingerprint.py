"""Batch fingerprints: a cheap hash of a strided sample of a batch's inputs and targets.

Two runs fed the same batches in the same order record the same fingerprints; a different shuffle, sampling
or preprocessing gives different ones, so ``trainguard diff`` can tell "same data, different computation" from
"different data". The hash covers every tensor's shape and an evenly strided sample of at most
:data:`FINGERPRINT_SAMPLE` of its elements (so every example of a batch is sampled unless examples are tiny),
which costs one small gather and transfer per step, whatever the batch size.

Adapters flatten each tensor, pick :func:`flat_sample` on their device, bring the sample to the host as a numpy
array and call :func:`batch_fingerprint` (or hand whole host arrays to :func:`fingerprint_arrays`); torch and
Keras share this one definition, so equal data hashes equal in both. Values are hashed as float32 (floating
types) or int64 (integers, booleans): the fingerprint says "same data", whatever dtype a pipeline delivered it
in (``model.fit`` converts float64 targets to float32, a hand-written loop may not).
"""
from __future__ import annotations

import hashlib
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = ["FINGERPRINT_SAMPLE", "flat_sample", "batch_fingerprint", "fingerprint_arrays"]

FINGERPRINT_SAMPLE = 4096


def flat_sample(flat: Any, size: int = FINGERPRINT_SAMPLE) -> Any:
    """Every ``len(flat) // size``-th element of a flat array or tensor, at most ``size`` of them."""
    stride = max(1, len(flat) // size)
    return flat[::stride][:size]


def batch_fingerprint(parts: Iterable[tuple[Sequence[int], np.ndarray]]) -> str | None:
    """A 16-hex-digit hash of ``(shape, sampled elements)`` pairs, one per tensor of the batch (inputs then
    targets, in a fixed order); None when there is no part."""
    digest = hashlib.blake2b(digest_size=8)
    count = 0
    for shape, sample in parts:
        values = np.asarray(sample)
        kind = "f" if values.dtype.kind in "fc" else "i"
        if values.dtype.kind == "c":
            values = np.stack([values.real, values.imag], axis=-1)
        values = np.ascontiguousarray(values, dtype=np.float32 if kind == "f" else np.int64)
        digest.update(repr((tuple(int(d) for d in shape), kind)).encode())
        digest.update(values.tobytes())
        count += 1
    return digest.hexdigest() if count else None


def fingerprint_arrays(arrays: Iterable[Any]) -> str | None:
    """:func:`batch_fingerprint` of whole host arrays (anything ``np.asarray`` reads), in the given order."""
    parts = []
    for array in arrays:
        values = np.asarray(array)
        parts.append((values.shape, flat_sample(values.reshape(-1))))
    return batch_fingerprint(parts)
