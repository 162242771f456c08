"""A small causal LM trained with the HF Trainer on a corpus holding a few garbage documents: isolated loss spikes.

Source: stanford-crfm/mistral#115, "Investigate loss spikes" (https://github.com/stanford-crfm/mistral/issues/115;
Mistral trains GPT-2 models through the HF Trainer): "We occasionally get large spikes in the training loss ... The
system ends up recovering"; first hypothesis: "we get 'bad batches' where the data is garbage, is thus high
perplexity, and gives us bad gradients". Re-created: GPT2Config(n_layer=2, n_embd=64, n_head=2) on a generated
token language streamed in file order (an ``IterableDataset``, which the Trainer does not shuffle, as with
pre-tokenized shards), where one stretch of 16 documents is garbage (random token ids, as a broken shard leaves);
batch 8, AdamW 1e-3, ``logging_steps=10`` as people log. The two batches of garbage cost several times the typical
loss, once per pass over the data, and training recovers at once. Fix here: the garbage documents filtered out of
the stream, nothing else.

Measured (unguarded, one thread; final_loss = held-out loss on clean documents after training): faulty 0.914,
fixed 0.911. The logged 10-step means jump from 1.43 to 2.08 at step 130 and from 0.99 to 2.04 at step 440 (the
two passes over the garbage stretch), and are back at the trend at the next log: two bad batches that the run
recovers from, as reported.
"""
from __future__ import annotations

import numpy as np
import torch

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._keras_common import (
    TokenDataset,
    finite_or_nan,
    token_language,
)

CASE = Case(name="hf_gpt2_garbage_docs", kind="faulty", cause="bad_batch", framework="hf",
            source="https://github.com/stanford-crfm/mistral/issues/115 (loss spikes from garbage-data batches)",
            symptom="occasional large spikes in the training loss, from which training recovers",
            fix="garbage documents filtered out of the training data")

VOCAB, LENGTH, STEPS, GARBAGE_AT, GARBAGE = 64, 32, 600, 1000, 16


class DocumentStream(torch.utils.data.IterableDataset):
    """The training documents in file order, as an iterable dataset (re-iterated for each pass)."""

    def __init__(self, seqs: np.ndarray):
        self.seqs = torch.from_numpy(seqs)

    def __iter__(self):
        for seq in self.seqs:
            yield {"input_ids": seq, "labels": seq}


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    seqs = token_language(3000, LENGTH, VOCAB, seed=3)
    train, held_out = seqs[:2500].copy(), seqs[2500:]
    garbage = np.arange(GARBAGE_AT, GARBAGE_AT + GARBAGE)
    train[garbage] = np.random.default_rng(4).integers(0, VOCAB, size=(GARBAGE, LENGTH))
    if ctx.fixed:
        train = np.delete(train, garbage, axis=0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=VOCAB, n_positions=LENGTH))
    args = TrainingArguments(output_dir=str(ctx.outdir), learning_rate=1e-3, max_steps=STEPS,
                             per_device_train_batch_size=8, logging_steps=10, report_to=[], save_strategy="no",
                             use_cpu=True, seed=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=DocumentStream(train),
                      eval_dataset=TokenDataset(held_out), callbacks=ctx.hf_callbacks())
    trainer.train()
    eval_loss = trainer.evaluate()["eval_loss"]
    trainer.save_state()
    return ctx.outcome(final_loss=finite_or_nan(eval_loss), model=model, steps=STEPS)
