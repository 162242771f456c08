"""The torch forensic recorders: batch fingerprints and BatchNorm running statistics."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from trainguard.adapters.torch.forensic import batch_fingerprint, buffer_stats, running_stat_buffers  # noqa: E402
from trainguard.diff.fingerprint import FINGERPRINT_SAMPLE, fingerprint_arrays, flat_sample  # noqa: E402
from trainguard.diff.fingerprint import batch_fingerprint as hash_parts  # noqa: E402


def test_fingerprint_is_stable_and_follows_content_order_and_shape():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 3, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)
    reference = batch_fingerprint(x, y)
    assert reference == batch_fingerprint(x.clone(), y.clone())
    assert len(reference) == 16 and int(reference, 16) >= 0
    assert batch_fingerprint(x[torch.randperm(64, generator=g)], y) != reference  # another order of the examples
    assert batch_fingerprint(x, (y + 1) % 10) != reference  # other targets
    assert batch_fingerprint(x.reshape(64, -1), y) != reference  # same values, other shape
    changed = x.clone()
    changed[37, 1, 4, 4] += 1.0  # one example altered inside its sampled elements' reach
    flat_index = int(np.ravel_multi_index((37, 1, 4, 4), x.shape))
    stride = max(1, x.numel() // FINGERPRINT_SAMPLE)
    assert (batch_fingerprint(changed, y) != reference) == (flat_index % stride == 0)
    assert batch_fingerprint(None, None) is None


def test_fingerprint_reads_nested_inputs_and_half_precision():
    x = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    nested = batch_fingerprint({"b": x, "a": [x * 2, x.half()]}, x)
    assert nested == batch_fingerprint({"a": [x * 2, x.half()], "b": x}, x)  # dict order does not matter
    assert nested != batch_fingerprint({"a": [x * 2, x.half()], "b": x + 1}, x)


def test_torch_and_numpy_sample_hash_alike():
    """Adapters share one hash: the same data sampled from a tensor or a numpy array fingerprints the same."""
    x = np.linspace(0, 1, 10_000, dtype=np.float32).reshape(100, 100)
    labels = np.arange(100) % 7
    from_numpy = hash_parts([(x.shape, flat_sample(x.reshape(-1))), (labels.shape, labels)])
    assert from_numpy == batch_fingerprint(torch.from_numpy(x), torch.from_numpy(labels))
    # A pipeline that delivers float64 inputs and int32 labels feeds the same data.
    assert from_numpy == fingerprint_arrays([x.astype(np.float64), labels.astype(np.int32)])
    assert from_numpy != fingerprint_arrays([x * 2, labels])


def test_buffer_stats_move_in_training_mode_only():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 2), nn.BatchNorm1d(2, affine=False))
    buffers = running_stat_buffers(model)
    assert [name for name, _ in buffers] == ["1.running_mean", "1.running_var", "1.num_batches_tracked",
                                             "3.running_mean", "3.running_var", "3.num_batches_tracked"]
    initial = buffer_stats(buffers)
    assert initial[0].mean == 0.0 and initial[1].mean == 1.0 and initial[1].norm == pytest.approx(6 ** 0.5)
    model.eval()
    model(torch.randn(8, 4))
    assert buffer_stats(buffers) == initial
    model.train()
    model(torch.randn(8, 4))
    after = buffer_stats(buffers)
    assert after[2].mean == 1.0 and after[0].mean != 0.0 and after[1].mean != 1.0
    assert running_stat_buffers(nn.Linear(2, 2)) == [] and buffer_stats([]) == ()
