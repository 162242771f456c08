"""Bad arguments are refused when the Keras guard is built, with the torch guard's one-line messages (issue 13
F15: ``Guard(detectors="x")`` used to be accepted, and fit then ran unguarded with a warning)."""
from __future__ import annotations

import pytest

keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

import trainguard  # noqa: E402
import trainguard.keras as tk  # noqa: E402

BAD = [
    {"detectors": "x"},
    {"log": 123},
    {"policy": 3},
    {"policy": "fast"},
    {"exporters": print},
    {"exporters": ["wandb"]},
]


def _error(build) -> tuple[type, str]:
    with pytest.raises((TypeError, ValueError)) as caught:
        build()
    return type(caught.value), str(caught.value)


@pytest.mark.parametrize("kwargs", BAD, ids=lambda kwargs: "-".join(f"{k}={v!r}" for k, v in kwargs.items()))
def test_keras_entry_points_refuse_what_the_torch_guard_refuses_with_the_same_message(kwargs):
    model = torch.nn.Linear(2, 1)
    expected = _error(lambda: trainguard.Guard(model, torch.optim.SGD(model.parameters(), lr=0.1), **kwargs))
    assert "\n" not in expected[1]
    assert _error(lambda: tk.Guard(**kwargs)) == expected
    assert _error(lambda: tk.GuardedOptimizer(keras.optimizers.SGD(0.1), **kwargs)) == expected
