"""A causal LM fine-tuned with the HF Trainer for many epochs on a small data set: the evaluation loss keeps rising.

Source: lm-sys/FastChat#371, "overfit and why?" (https://github.com/lm-sys/FastChat/issues/371; FastChat trains
through the HF Trainer): "with different models, sizes, and datasets ... the evaluation loss keeps increasing"
while training goes on. The fix the Trainer offers for exactly this (huggingface/transformers#7431, "When
fine-tuning a model on a dataset that can easily overfit the model, it's quite common to have the last model not
be the best one"): ``load_best_model_at_end`` with ``metric_for_best_model="eval_loss"``, and with it
``EarlyStoppingCallback``. Re-created: GPT2Config(n_layer=2, n_embd=64, n_head=2) trained 40 epochs on 96
sequences of a generated token language, ``eval_strategy="steps"`` every 30 steps on 500 held-out sequences.
Fix here: checkpoints at each evaluation, the best reloaded at the end, early stopping after 3 evaluations without
improvement; nothing else.

Measured (unguarded, one thread; final_loss = held-out loss of the model the run ends with, ``trainer.evaluate()``):
faulty 1.28 (best 1.11 at step 150, then rising at nearly every evaluation to 1.28 at step 480 while the
training loss falls from 0.85 to 0.52), fixed 1.11 (stopped at step 240, the step-150 model reloaded).
"""
from __future__ import annotations

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.faulty._keras_common import (
    TokenDataset,
    finite_or_nan,
    token_language,
)

CASE = Case(name="hf_gpt2_eval_overfit", kind="faulty", cause="overfitting", framework="hf",
            source="https://github.com/lm-sys/FastChat/issues/371 (overfit and why?: eval loss keeps increasing)",
            symptom="the evaluation loss keeps increasing while the training loss falls",
            fix="load_best_model_at_end on eval_loss with EarlyStoppingCallback (transformers#7431)")

VOCAB, LENGTH, EPOCHS, EVAL_EVERY = 64, 32, 40, 30


def run(ctx: RunContext) -> Outcome:
    seeded(0)
    from transformers import (
        EarlyStoppingCallback,
        GPT2Config,
        GPT2LMHeadModel,
        Trainer,
        TrainingArguments,
    )

    seqs = token_language(596, LENGTH, VOCAB, seed=5)
    train, held_out = TokenDataset(seqs[:96]), TokenDataset(seqs[96:])
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=VOCAB, n_positions=LENGTH))
    best = dict(save_strategy="steps", save_steps=EVAL_EVERY, save_total_limit=1, load_best_model_at_end=True,
                metric_for_best_model="eval_loss") if ctx.fixed else dict(save_strategy="no")
    args = TrainingArguments(output_dir=str(ctx.outdir), learning_rate=2e-3, num_train_epochs=EPOCHS,
                             per_device_train_batch_size=8, logging_steps=10, eval_strategy="steps",
                             eval_steps=EVAL_EVERY, report_to=[], use_cpu=True, seed=0, disable_tqdm=True, **best)
    callbacks = ctx.hf_callbacks() + ([EarlyStoppingCallback(early_stopping_patience=3)] if ctx.fixed else [])
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=held_out, callbacks=callbacks)
    result = trainer.train()
    eval_loss = trainer.evaluate()["eval_loss"]
    trainer.save_state()
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h][:-1]
    return ctx.outcome(final_loss=finite_or_nan(eval_loss), model=model, steps=result.global_step,
                       best_eval_loss=min(evals), evaluations=len(evals))
