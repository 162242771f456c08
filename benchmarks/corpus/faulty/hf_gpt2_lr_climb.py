"""A small causal LM trained with the HF Trainer at a learning rate 10x too high: the loss falls, then climbs.

Source: haotian-liu/LLaVA#1301, "[Question] Loss suddenly increases during fine-tuning with LoRA"
(https://github.com/haotian-liu/LLaVA/issues/1301; LLaVA trains through the HF Trainer): the training loss falls,
then rises sharply and stays up; the reporter's resolution: "roughly because of learning_rate, i decreased it by
10x lower", after which "the loss looked much better". Re-created: GPT2Config(n_layer=2, n_embd=64, n_head=2) on
a generated token language under the HF Trainer (AdamW, 30 warm-up steps then a constant rate), peak lr 0.1
(faulty) against 0.01 (fixed, 10x lower); nothing else differs.

Measured (unguarded, one thread; final_loss = held-out loss after training, ``trainer.evaluate()``): faulty 2.13
(the logged loss falls from 3.65 to 1.44 by step 70, as the warm-up ends, then climbs to 2.77 by step 270),
fixed 0.91.
"""
from __future__ import annotations

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._keras_common import (
    TokenDataset,
    finite_or_nan,
    token_language,
)

CASE = Case(name="hf_gpt2_lr_climb", kind="faulty", cause="lr_too_high", framework="hf",
            source="https://github.com/haotian-liu/LLaVA/issues/1301 (loss suddenly increases; lr lowered 10x)",
            symptom="training loss falls, then increases and stays high",
            fix="learning rate 10x lower (the reporter's fix)")

VOCAB, LENGTH, STEPS = 64, 32, 300
LR = 1e-1


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    seqs = token_language(3000, LENGTH, VOCAB, seed=2)
    train, held_out = TokenDataset(seqs[:2500]), TokenDataset(seqs[2500:])
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=VOCAB, n_positions=LENGTH))
    args = TrainingArguments(output_dir=str(ctx.outdir), learning_rate=LR / 10 if ctx.fixed else LR,
                             max_steps=STEPS, per_device_train_batch_size=32, logging_steps=10, report_to=[],
                             save_strategy="no", use_cpu=True, seed=0, disable_tqdm=True,
                             lr_scheduler_type="constant_with_warmup", warmup_steps=30)
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=held_out,
                      callbacks=ctx.hf_callbacks())
    trainer.train()
    eval_loss = trainer.evaluate()["eval_loss"]
    trainer.save_state()
    return ctx.outcome(final_loss=finite_or_nan(eval_loss), model=model, steps=STEPS)
