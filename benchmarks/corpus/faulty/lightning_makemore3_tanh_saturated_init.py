"""A character-level MLP language model (makemore) whose tanh hidden layer is initialized with unit-variance weights:
most hidden units start, and stay, in the flat part of tanh; scaling the initialization trains clearly better.

Source: Andrej Karpathy, "Building makemore Part 3: Activations & Gradients, BatchNorm" (nn-zero-to-hero lecture,
notebook https://github.com/karpathy/nn-zero-to-hero/blob/master/lectures/makemore/makemore_part3_bn.ipynb; the
saturation thresholds it uses are discussed in karpathy/nn-zero-to-hero#66). The model: 27 characters embedded in
10 dimensions, a context of 3 characters concatenated (30 inputs), a hidden layer of 200 tanh units, 27 logits,
cross-entropy, SGD at lr 0.1 on batches of 32. With the hidden weights drawn from ``torch.randn`` (std 1), the
pre-activations have a std of ~5 and most of ``h = tanh(hpreact)`` sits at +-1 (the lecture's ``h.abs() > 0.99``
picture, "dead" units that pass no gradient). Fix (the lecture's): scale the hidden weights by
(5/3) / sqrt(fan_in), the Kaiming gain of tanh (the notebook keeps ``#* 0.2``, the value first tried), nothing else.
The output layer already has the lecture's earlier fix (weights * 0.01, zero bias) in both twins. Not the saturated
*output* cases of the corpus (a bounded output that cannot reach the targets): here the hidden layer saturates
from its initialization while the data are well scaled (embeddings of std 1).

Here: a LightningModule with that network; the text is a synthetic 27-symbol stream from a random second-order
Markov chain (``_torch_common.token_corpus``, 40,000 tokens; the names data set is not downloaded), windows of 3
characters predicting the next, shuffled batches of 32, 8,000 steps, ``CSVLogger(save_dir=outdir)``.
extra: the share of hidden activations with |h| > 0.99 on the first and the last batch.
Measured (unguarded, one thread, ~14 s a run; final_loss = mean cross-entropy of the last 10% of steps, uniform
ln 27 = 3.30): faulty: 3.28 at step 0, 60% of the hidden activations at |h| > 0.99 on the first batch and 64% on
the last, final 2.50; fixed ((5/3)/sqrt(30) init): 3.29 at step 0, 9% saturated on the first batch and 29% on the
last, final 2.21.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._lightning_common import fit_on_cpu
from benchmarks.corpus.faulty._torch_common import tail_mean, token_corpus

CASE = Case(name="lightning_makemore3_tanh_saturated_init", kind="faulty", cause="saturated_activation",
            framework="lightning",
            source="https://github.com/karpathy/nn-zero-to-hero/blob/master/lectures/makemore/makemore_part3_bn.ipynb"
                   " (Building makemore Part 3: tanh hidden layer saturated by a randn initialization; "
                   "karpathy/nn-zero-to-hero#66)",
            symptom="most tanh hidden units at |h| > 0.99 from the start: their gradient is ~0 and the loss falls "
                    "slowly",
            fix="hidden weights scaled by (5/3)/sqrt(fan_in) (Kaiming init for tanh, as in the lecture)")

VOCAB, EMBED, CONTEXT, HIDDEN, TOKENS, STEPS, BATCH, LR = 27, 10, 3, 200, 40000, 8000, 32, 0.1


def _module_class() -> type:
    import lightning.pytorch as pl

    class MakemoreMLP(pl.LightningModule):
        def __init__(self, scaled_init: bool) -> None:
            super().__init__()
            self.emb = nn.Embedding(VOCAB, EMBED)  # N(0, 1), as the lecture's C = torch.randn
            self.hidden = nn.Linear(EMBED * CONTEXT, HIDDEN)
            self.out = nn.Linear(HIDDEN, VOCAB)
            with torch.no_grad():
                gain = (5 / 3) / (EMBED * CONTEXT) ** 0.5 if scaled_init else 1.0
                self.hidden.weight.normal_(0.0, 1.0).mul_(gain)
                self.hidden.bias.normal_(0.0, 1.0).mul_(0.01)
                self.out.weight.normal_(0.0, 1.0).mul_(0.01)
                self.out.bias.zero_()
            self.losses: list[float] = []
            self.saturated: list[float] = []

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
            x, y = batch
            h = torch.tanh(self.hidden(self.emb(x).flatten(1)))
            loss = F.cross_entropy(self.out(h), y)
            self.losses.append(loss.item())
            self.saturated.append(float((h.detach().abs() > 0.99).float().mean()))
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=LR)

    return MakemoreMLP


def run(ctx: RunContext) -> Outcome:

    seeded(0)
    tokens = torch.from_numpy(token_corpus(TOKENS, VOCAB, seed=1, order=2))
    x = torch.stack([tokens[i:len(tokens) - CONTEXT + i] for i in range(CONTEXT)], dim=1)
    y = tokens[CONTEXT:]
    model = _module_class()(scaled_init=ctx.fixed)
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True,
                        generator=torch.Generator().manual_seed(2))
    fit_on_cpu(ctx, model, loader, max_steps=STEPS)
    return ctx.outcome(tail_mean(model.losses), model=model, steps=len(model.losses), first_loss=model.losses[0],
                       saturated_first=model.saturated[0], saturated_last=model.saturated[-1])
