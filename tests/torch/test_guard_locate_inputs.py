"""The NaN search re-runs ``model(inputs)``; ``inputs=`` given for the data checks may be one of several forward
arguments (Open-Assistant's reward model: question, answer, length). That is the user's choice, not the guard's
failure: the search is switched off with a run-log event, not reported as a guard_internal_error warning."""
from __future__ import annotations

import torch
from torch import nn

import trainguard
from trainguard.io.runlog import read_runlog


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.q = nn.Linear(4, 8)
        self.a = nn.Linear(4, 8)
        self.head = nn.Linear(8, 1)

    def forward(self, question, answer, length):
        return self.head(torch.relu(self.q(question) + self.a(answer))) / length


def run(tmp_path, inputs_of):
    torch.manual_seed(0)
    model = TwoInputs()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    guard = trainguard.Guard(model, opt, policy="safe", log=tmp_path / "run.jsonl")
    for step in range(6):
        q, a = torch.randn(16, 4), torch.randn(16, 4)
        length = torch.zeros(16, 1) if step == 3 else torch.full((16, 1), 2.0)  # 0/0 at step 3: the empty answer
        opt.zero_grad()
        loss = model(q, a, length).pow(2).mean()
        loss.backward()
        guard.step(loss, inputs=inputs_of(q, a, length))
    guard.close()
    return guard, read_runlog(tmp_path / "run.jsonl")


def test_partial_inputs_switch_the_search_off_with_an_event_not_an_internal_error(tmp_path):
    guard, log = run(tmp_path, lambda q, a, length: q)
    assert not [f for f in guard.findings if f.code == "guard_internal_error"]
    assert [f for f in guard.findings if f.code == "non_finite"]
    off = [e for e in log.events if e.get("kind") == "non_finite_localisation_off"]
    assert len(off) == 1 and "TwoInputs.forward" in off[0]["reason"]
    assert all(torch.isfinite(p).all() for p in guard.model.parameters())


def test_the_whole_call_as_a_tuple_is_searched(tmp_path):
    guard, log = run(tmp_path, lambda q, a, length: (q, a, length))
    assert not [e for e in log.events if e.get("kind") == "non_finite_localisation_off"]
    located = [s.first_nonfinite_module for s in log.steps if s.first_nonfinite_module]
    assert located == ["TwoInputs"]  # the division in the model's own forward, not a submodule
