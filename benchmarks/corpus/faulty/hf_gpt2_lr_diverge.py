"""A GPT-2 language model trained with a learning rate of 2 where its recipe says 2.5e-4: the loss diverges.

Source: OpenNMT/OpenNMT-tf#744, "RuntimeError: Model diverged with loss = NaN."
(https://github.com/OpenNMT/OpenNMT-tf/issues/744): training a GPT2Small language model stops with a NaN loss; the
maintainer's answer: "The learning rate you set in the configuration is too large. You can see the default learning
rate in GPT2Small is 2.5e-4 but you then set 2." Re-created with the HF Trainer: GPT2Config(n_layer=2, n_embd=64,
n_head=2) on a generated token language, AdamW at lr 2 (faulty) against 2.5e-4 (fixed), the Trainer's defaults
otherwise (linear decay, no warm-up, gradient clipping at norm 1); nothing else differs.

Measured (unguarded, one thread; final_loss = held-out loss after training, ``trainer.evaluate()``; nan when the
weights went non-finite): faulty 10.3 (the logged loss is 364 over the first 10 steps and 561 over the next, against
ln 64 = 4.16 for a uniform guess, stays in the hundreds and only falls to 12 as the linear decay takes the rate to
zero; the Trainer's clipping keeps it finite), fixed 2.04.
"""
from __future__ import annotations

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._keras_common import (
    TokenDataset,
    finite_or_nan,
    token_language,
)

CASE = Case(name="hf_gpt2_lr_diverge", kind="faulty", cause="lr_too_high", framework="hf",
            source="https://github.com/OpenNMT/OpenNMT-tf/issues/744 (GPT2Small at learning rate 2: loss NaN)",
            symptom="the language model diverges (loss NaN / exploding)",
            fix="the recipe's learning rate, 2.5e-4, instead of 2 (maintainer's answer)")

VOCAB, LENGTH, STEPS = 64, 32, 300


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    seqs = token_language(3000, LENGTH, VOCAB, seed=6)
    train, held_out = TokenDataset(seqs[:2500]), TokenDataset(seqs[2500:])
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=VOCAB, n_positions=LENGTH))
    args = TrainingArguments(output_dir=str(ctx.outdir), learning_rate=2.5e-4 if ctx.fixed else 2.0,
                             max_steps=STEPS, per_device_train_batch_size=32, logging_steps=10, report_to=[],
                             save_strategy="no", use_cpu=True, seed=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=held_out,
                      callbacks=ctx.hf_callbacks())
    trainer.train()
    eval_loss = trainer.evaluate()["eval_loss"]
    trainer.save_state()
    return ctx.outcome(final_loss=finite_or_nan(eval_loss), model=model, steps=STEPS)
