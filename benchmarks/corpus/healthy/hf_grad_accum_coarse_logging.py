"""HF ``Trainer`` with ``gradient_accumulation_steps=2`` and coarse logging (every 25 optimizer steps): a tiny BERT
with a regression head (``num_labels=1``, MSE), cosine schedule with warm-up.

Recipe: the transformers text-classification example ``run_glue.py`` on a regression task (STS-B: ``num_labels=1``
makes ``BertForSequenceClassification`` use ``MSELoss``, https://github.com/huggingface/transformers/blob/main/
examples/pytorch/text-classification/run_glue.py) with the Trainer options ``gradient_accumulation_steps`` and
``logging_steps`` (https://huggingface.co/docs/transformers/main_classes/trainer#transformers.TrainingArguments).
A BERT of 2 layers, width 64, 2 heads, from a config; token sequences of length 32 whose standardized score is
the balance of positive and negative marker tokens plus noise; micro-batch 16 x 2 = 32, lr 1e-3,
``lr_scheduler_type="cosine"``, ``warmup_steps=0.1`` (a ratio, as transformers 5 takes it), 250 optimizer steps.
The log holds 10 points for 500 micro-batches.

Measured (unguarded, one thread, 9.2 s): logged loss 1.93, 2.12, 1.84, 1.07, 0.64, 0.42, 0.33, 0.28, 0.26, 0.24
(every 25 optimizer steps); held-out MSE 0.127 against 0.925 for the trivial predictor (the held-out scores'
variance). The logged values look like the sum of the window's two micro-batch losses, not their mean, under
transformers 5.25: the first is 1.93, ~2x the MSE of an untrained head on a unit-variance target.
"""
from __future__ import annotations

import numpy as np
import torch

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded

CASE = Case(name="hf_grad_accum_coarse_logging", kind="healthy", cause=None, framework="hf",
            source="transformers examples/pytorch/text-classification/run_glue.py (regression, num_labels=1); "
                   "TrainingArguments gradient_accumulation_steps / logging_steps",
            symptom="none: loss logged every 25 optimizer steps (50 micro-batches); MSE on a standardized score")

LENGTH, VOCAB, MARKERS, STEPS = 32, 400, 8, 250


class Scored(torch.utils.data.Dataset):
    def __init__(self, ids: np.ndarray, score: np.ndarray):
        self.ids, self.score = torch.from_numpy(ids), torch.from_numpy(score)

    def __len__(self) -> int:
        return len(self.score)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(LENGTH, dtype=torch.long),
                "labels": self.score[i]}


def scored_sequences(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random tokens with 0-6 positive markers (ids 1..8) and 0-6 negative ones (9..16); score = positives -
    negatives + N(0, 0.5^2), standardized (an STS-B-like graded target)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(2 * MARKERS + 1, VOCAB, size=(n, LENGTH))
    positives, negatives = rng.integers(0, 7, n), rng.integers(0, 7, n)
    for i in range(n):
        slots = rng.choice(LENGTH, positives[i] + negatives[i], replace=False)
        ids[i, slots[:positives[i]]] = rng.integers(1, MARKERS + 1, positives[i])
        ids[i, slots[positives[i]:]] = rng.integers(MARKERS + 1, 2 * MARKERS + 1, negatives[i])
    score = positives - negatives + 0.5 * rng.normal(size=n)
    return ids.astype(np.int64), ((score - score.mean()) / score.std()).astype(np.float32)


def run(ctx: RunContext) -> Outcome:
    from transformers import BertConfig, BertForSequenceClassification, PrinterCallback, Trainer, TrainingArguments

    seeded(0)
    ids, score = scored_sequences(3000, seed=291)
    train, val = Scored(ids[:2500], score[:2500]), Scored(ids[2500:], score[2500:])
    config = BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=LENGTH, num_labels=1, pad_token_id=0)
    model = BertForSequenceClassification(config)
    args = TrainingArguments(output_dir=str(ctx.outdir), report_to=[], save_strategy="no", use_cpu=True, seed=0,
                             per_device_train_batch_size=16, gradient_accumulation_steps=2,
                             per_device_eval_batch_size=128, learning_rate=1e-3, lr_scheduler_type="cosine",
                             warmup_steps=0.1, max_steps=STEPS, logging_steps=25, weight_decay=0.01,
                             dataloader_num_workers=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val, callbacks=ctx.hf_callbacks())
    trainer.remove_callback(PrinterCallback)  # the log goes to trainer_state.json, not to stdout
    trainer.train()
    eval_loss = trainer.evaluate()["eval_loss"]
    trainer.save_state()
    logged = [round(r["loss"], 4) for r in trainer.state.log_history if "loss" in r]
    return ctx.outcome(eval_loss, model=model, steps=trainer.state.global_step, logged_losses=logged,
                       trivial_loss=float(score[2500:].var()))
