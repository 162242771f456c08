"""The trainer callbacks check the guard's arguments when they are made, with the plain guard's messages (not
at the start of fit, after the trainer has set everything up)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import trainguard  # noqa: E402


@pytest.mark.parametrize("integration", ["lightning", "hf"])
@pytest.mark.parametrize("kwargs", [{"log": 123}, {"detectors": "x"}, {"policy": "fast"}, {"fetch_every": 0}],
                         ids=["log", "detectors", "policy", "fetch_every"])
def test_a_trainer_callback_refuses_bad_arguments_when_made(integration, kwargs):
    callback = pytest.importorskip(f"trainguard.{integration}").Guard
    model = torch.nn.Linear(2, 1)
    with pytest.raises((TypeError, ValueError)) as plain:
        trainguard.Guard(model, torch.optim.SGD(model.parameters(), lr=0.1), **kwargs)
    with pytest.raises(type(plain.value)) as made:
        callback(**kwargs)
    assert str(made.value) == str(plain.value)
