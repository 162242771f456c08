"""HF ``Trainer`` pretraining a GPT-2 from a tiny config: linear warm-up then linear decay, AdamW, logging every 10.

Recipe: the Hugging Face course chapter "Training a causal language model from scratch"
(https://huggingface.co/learn/llm-course/chapter7/6: ``AutoConfig.from_pretrained("gpt2", ...)`` ->
``GPT2LMHeadModel(config)``, warm-up, weight decay 0.1 there, cosine; here the Trainer's default ``"linear"``
schedule) and ``run_clm.py`` (labels = input ids, the model shifts them). A GPT-2 of
2 layers, width 64, 2 heads, context 32, over the characters of English-like grammar text; batch 16, lr 2e-3,
``warmup_steps=40``, 300 steps, ``logging_steps=10``; the held-out loss at the end.

Measured (unguarded, one thread, 8.1 s): logged loss 2.99 at step 10 (ln 23 = 3.14 uniform, 2.79 the unigram
entropy) -> 1.13 at step 300; held-out loss 0.95.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from benchmarks.corpus.case import Case, Outcome, RunContext, seeded
from benchmarks.corpus.healthy._common import grammar_text

CASE = Case(name="hf_gpt2_tiny_warmup_linear", kind="healthy", cause=None, framework="hf",
            source="https://huggingface.co/learn/llm-course/chapter7/6 (GPT-2 from config with Trainer); "
                   "transformers examples run_clm.py",
            symptom="none: LR 0 -> 2e-3 over 40 steps then linear to 0; loss logged every 10 steps")

CONTEXT, STEPS = 32, 300


class CharBlocks(torch.utils.data.Dataset):
    def __init__(self, ids: np.ndarray):
        self.blocks = torch.from_numpy(ids[: len(ids) // CONTEXT * CONTEXT].reshape(-1, CONTEXT))

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.blocks[i], "labels": self.blocks[i]}


def run(ctx: RunContext) -> Outcome:
    from transformers import GPT2Config, GPT2LMHeadModel, PrinterCallback, Trainer, TrainingArguments

    seeded(0)
    text = grammar_text(80_000, seed=271)
    chars = sorted(set(text))
    ids = np.array([chars.index(c) for c in text], dtype=np.int64)
    train, val = CharBlocks(ids[:72_000]), CharBlocks(ids[72_000:])
    config = GPT2Config(vocab_size=len(chars), n_positions=CONTEXT, n_embd=64, n_layer=2, n_head=2,
                        bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config)
    args = TrainingArguments(output_dir=str(ctx.outdir), report_to=[], save_strategy="no", use_cpu=True, seed=0,
                             per_device_train_batch_size=16, per_device_eval_batch_size=64, learning_rate=2e-3,
                             lr_scheduler_type="linear", warmup_steps=40, max_steps=STEPS, logging_steps=10,
                             weight_decay=0.01, dataloader_num_workers=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val, callbacks=ctx.hf_callbacks())
    trainer.remove_callback(PrinterCallback)  # the log goes to trainer_state.json, not to stdout
    trainer.train()
    eval_loss = trainer.evaluate()["eval_loss"]
    trainer.save_state()
    logged = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    p = np.bincount(ids, minlength=len(chars)) / len(ids)
    return ctx.outcome(eval_loss, model=model, steps=trainer.state.global_step, first_logged_loss=logged[0],
                       last_logged_loss=logged[-1], trivial_loss=float(-(p[p > 0] * np.log(p[p > 0])).sum()),
                       uniform_loss=math.log(len(chars)))
