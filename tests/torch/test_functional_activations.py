"""Activations called as functions (``torch.tanh``, ``F.relu``, ``x.sigmoid()``) have no module to hook: the torch
activation probe reads them from the autograd graph of the sampled forward (``hooks.ActivationProbe``). Real small
training runs: a makemore-style MLP whose functional tanh layer is saturated from its initialization is found
(Karpathy, "Building makemore Part 3"), a healthy net written with functional activations and gates is not, and
the probe leaves the run bitwise as it was."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

import trainguard
from trainguard.core.findings import Severity

VOCAB, EMBED, CONTEXT, HIDDEN = 27, 10, 3, 200


class Makemore(nn.Module):
    """Karpathy's character MLP: embeddings, a hidden layer with ``torch.tanh`` in forward, logits."""

    def __init__(self, gain: float):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, EMBED)
        self.hidden = nn.Linear(EMBED * CONTEXT, HIDDEN)
        self.out = nn.Linear(HIDDEN, VOCAB)
        with torch.no_grad():
            self.hidden.weight.normal_(0.0, 1.0).mul_(gain)  # gain 1: pre-activations of std ~5
            self.out.weight.mul_(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.hidden(self.emb(x).flatten(1))))


def _train(model: nn.Module, steps: int, guard: bool = True, forward=None, seed: int = 0):
    torch.manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    g = trainguard.Guard(model, optimizer, policy="observe", preset="full") if guard else None
    data = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randint(0, VOCAB, (32, CONTEXT), generator=data)
        y = (x.sum(1) % VOCAB)
        logits = (forward or model)(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        if g is None:
            optimizer.step()
        else:
            g.step(loss)
    if g is not None:
        g.close()
    return g


def _warnings(guard, code: str) -> list:
    return [f for f in guard.findings if f.code == code and f.severity >= Severity.WARNING]


def test_a_functional_tanh_layer_saturated_from_its_initialization_is_found():
    torch.manual_seed(0)
    guard = _train(Makemore(gain=1.0), steps=6)
    records = {a.name: a for a in guard.history[0].activations}
    assert records["hidden->tanh"].kind == "tanh"
    assert records["hidden->tanh"].saturated_fraction > 0.5
    found = _warnings(guard, "saturated_activation")
    assert [f.where for f in found] == ["hidden->tanh"]


def test_the_same_layer_scaled_as_kaiming_for_tanh_is_not():
    torch.manual_seed(0)
    guard = _train(Makemore(gain=(5 / 3) / math.sqrt(EMBED * CONTEXT)), steps=6)
    records = {a.name: a for a in guard.history[0].activations}
    assert records["hidden->tanh"].saturated_fraction < 0.2  # measured, and low
    assert not [f for f in guard.findings if f.severity >= Severity.WARNING]


class HealthyFunctional(nn.Module):
    """Functional activations as real code writes them: F.relu between layers, an in-place relu_, a tanh-form GELU
    and SiLU (x * sigmoid(x)), whose tanh/sigmoid are gates, a GRU (gates inside), a final sigmoid."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 16)
        self.gru = nn.GRU(16, 16, batch_first=True)
        self.fc1 = nn.Linear(16 * CONTEXT, 64)
        self.fc2 = nn.Linear(64, 64)
        self.fc3 = nn.Linear(64, 64)
        self.head = nn.Linear(64, VOCAB)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(self.emb(x))
        h = F.relu(self.fc1(h.flatten(1)))
        a = self.fc2(h)
        h = 0.5 * a * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (a + 0.044715 * a.pow(3))))  # GELU, tanh form
        a = self.fc3(h)
        h = (a * torch.sigmoid(a)).relu_()  # SiLU, then an in-place ReLU
        return self.head(h) * 4.0 * torch.sigmoid(self.head(h)).mean()


def test_a_healthy_net_with_functional_activations_and_gates_is_not_flagged():
    torch.manual_seed(0)
    guard = _train(HealthyFunctional(), steps=40)
    names = [a.name for a in guard.history[0].activations]
    assert names[:2] == ["fc1->relu", "HealthyFunctional:relu"]  # read; the gates' tanh/sigmoid are not
    assert not any(n.endswith(("->tanh", "->sigmoid", ":tanh", ":sigmoid")) for n in names)
    assert all(a.dead_fraction < 0.5 for s in guard.history for a in s.activations if a.kind == "relu")
    assert not [f for f in guard.findings if f.code in ("dead_relu", "saturated_activation")]


def test_the_probe_leaves_the_run_bitwise_as_it_was():
    torch.manual_seed(0)
    guarded = Makemore(gain=1.0)
    unguarded = Makemore(gain=1.0)
    unguarded.load_state_dict(guarded.state_dict())
    _train(guarded, steps=30)
    _train(unguarded, steps=30, guard=False)
    assert all(torch.equal(a, b) for a, b in zip(guarded.state_dict().values(), unguarded.state_dict().values()))


def test_activations_between_module_calls_are_read_and_another_models_are_not():
    # As a LightningModule's training_step: the tanh is applied between calls of the model's modules, to the
    # output of a generator that has its own modules (a GAN's discriminator reading the generator's output).
    torch.manual_seed(0)
    generator = nn.Linear(4, EMBED * CONTEXT)
    model = Makemore(gain=1.0)
    guard = _train(model, steps=2, forward=lambda x: model.out(torch.sigmoid(
        model.hidden(torch.tanh(generator(x.float().repeat(1, 2)[:, :4]) * 3.0)))))
    names = [a.name for a in guard.history[0].activations]
    assert names == ["hidden->sigmoid"]  # the generator's tanh is not the model's


def test_a_checkpointed_activation_is_not_unpacked():
    # Unpacking a tensor saved under non-reentrant checkpointing recomputes the checkpointed forward.
    calls = []

    class Checkpointed(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(VOCAB, EMBED)
            self.hidden = nn.Linear(EMBED * CONTEXT, HIDDEN)
            self.out = nn.Linear(HIDDEN, VOCAB)

        def block(self, x):
            calls.append(1)
            return torch.tanh(self.hidden(x))

        def forward(self, x):
            return self.out(checkpoint(self.block, self.emb(x).flatten(1), use_reentrant=False))

    guard = _train(Checkpointed(), steps=3)
    assert len(calls) == 6  # a forward and a recomputation in the backward per step, none for the probe
    assert not [a for s in guard.history for a in s.activations if a.kind == "tanh"]


class TinyVAE(nn.Module):
    """pytorch/examples' VAE, shrunk: F.relu encoder, a functional sigmoid on the reconstruction, and a tuple out."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(64, 32)
        self.mu = nn.Linear(32, 4)
        self.logvar = nn.Linear(32, 4)
        self.dec1 = nn.Linear(4, 32)
        self.dec2 = nn.Linear(32, 64)

    def forward(self, x: torch.Tensor):
        h = F.relu(self.enc(x))
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.dec2(F.relu(self.dec1(z)))), mu, logvar


def test_a_vaes_saturated_reconstruction_sigmoid_is_its_output_not_a_hidden_layer():
    # Binary pixels, three quarters of them background (always 0): the reconstruction's sigmoid saturates as it
    # fits them (a good fit, INFO).
    torch.manual_seed(0)
    model = TinyVAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    guard = trainguard.Guard(model, optimizer, policy="observe", preset="full")
    pixels = torch.cat([torch.zeros(256, 48), (torch.rand(256, 16) < 0.5).float()], dim=1)
    for step in range(300):
        x = pixels[(step * 32) % 256:(step * 32) % 256 + 32]
        recon, mu, logvar = model(x)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1).mean()
        loss = F.binary_cross_entropy(recon, x, reduction="none").sum(1).mean() + kl
        optimizer.zero_grad()
        loss.backward()
        guard.step(loss)
    guard.close()
    last = {a.name: a for a in guard.history[-1].activations}
    assert last["dec2->sigmoid"].saturated_fraction > 0.5
    assert last["(output)"].output_std == last["dec2->sigmoid"].output_std  # the output is the reconstruction
    saturated = [f for f in guard.findings if f.code == "saturated_activation"]
    assert saturated and all(f.severity == Severity.INFO and f.evidence["final_activation"] for f in saturated)


def test_no_hook_of_the_probe_stays_after_the_sampled_step():
    torch.manual_seed(0)
    module = torch.nn.modules.module
    before = (len(module._global_forward_pre_hooks), len(module._global_forward_hooks))
    guard = _train(Makemore(gain=1.0), steps=2)  # every step sampled: the hooks go in and out each step
    assert guard.history[1].activations
    assert (len(module._global_forward_pre_hooks), len(module._global_forward_hooks)) == before
