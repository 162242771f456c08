"""A GPT-2 trained from a config with the HF Trainer at a learning rate ~100x too high: the loss stalls high.

Source: karpathy/nanoGPT#468, "Is this loss curve normal" (https://github.com/karpathy/nanoGPT/issues/468): a
GPT-2 trained from scratch whose loss flattens far above the expected curve; the reply names the cause, "That is a
crazy high learning rate, could be the issue" (the reporter's later runs, at the same rate, stayed flat).
Re-created with the HF Trainer, as people train a GPT-2 from a config: GPT2Config(n_layer=2, n_embd=64, n_head=2)
on a generated token language, AdamW at lr 0.1 (faulty) against 1e-3 (fixed), the Trainer's default linear decay,
no warm-up; nothing else differs. At 0.1 AdamW's steps are far too large for the embeddings and attention, the
loss drops to the level of the token frequencies and stays there instead of exploding.

Measured (unguarded, one thread; final_loss = held-out loss after training, ``trainer.evaluate()``; ln 64 = 4.16
is the uniform predictor's): faulty 3.26 (the logged loss 4.68 -> 3.76 in 30
steps, then 3.65 ... 3.29 over the remaining 270), fixed 1.03.
"""
from __future__ import annotations

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._keras_common import (
    TokenDataset,
    finite_or_nan,
    token_language,
)

CASE = Case(name="hf_gpt2_lr_stall", kind="faulty", cause="lr_too_high", framework="hf",
            source="https://github.com/karpathy/nanoGPT/issues/468 (GPT-2 from scratch, 'crazy high learning rate')",
            symptom="training loss flattens far above the expected curve and stays there",
            fix="learning rate 1e-3 instead of 0.1")

VOCAB, LENGTH, STEPS = 64, 32, 300


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    seqs = token_language(3000, LENGTH, VOCAB, seed=1)
    train, held_out = TokenDataset(seqs[:2500]), TokenDataset(seqs[2500:])
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=VOCAB, n_positions=LENGTH))
    args = TrainingArguments(output_dir=str(ctx.outdir), learning_rate=1e-3 if ctx.fixed else 0.1, max_steps=STEPS,
                             per_device_train_batch_size=32, logging_steps=10, report_to=[], save_strategy="no",
                             use_cpu=True, seed=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=held_out,
                      callbacks=ctx.hf_callbacks())
    trainer.train()
    eval_loss = trainer.evaluate()["eval_loss"]
    trainer.save_state()
    return ctx.outcome(final_loss=finite_or_nan(eval_loss), model=model, steps=STEPS)
