"""Supervised fine-tuning on a labelled task: one class per text, or one per token.

Two ways to read a class off a model:

- a **classification head** (``model`` is a Hugging Face ``...ForSequenceClassification`` or
  ``...ForTokenClassification``): cross-entropy over the classes;
- the **MLM head**, as ModernBERT-Large-Instruct is fine-tuned (Clavié et al. 2025, "It's All in The [MASK]:
  Simple Instruction-Tuning Enables BERT-like Masked Language Models As Generative Classifiers", Sec. 3): the
  text ends in a template whose last token is ``<mask>``, and the head is trained with cross-entropy over the
  whole vocabulary to put the class's answer token there (``answer_ids``). A prediction is the best-scoring of
  the classes' answer tokens.

An example is a [2, L] row: token ids, then labels (-100 where there is none). A per-text task puts its class at
position 0 (classification head) or at the mask slot (MLM head); a per-token task labels tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from masklab.objectives.base import Objective, logits_of

__all__ = ["Finetune"]


class Finetune(Objective):
    """``forward(batch [B, 2, L], keys) -> (loss, {"acc"})``; ``answer_ids`` [C] selects the MLM-head form."""

    name = "finetune"
    eval_batch_size = 64

    def __init__(self, model, pad_id: int, per_token: bool = False, answer_ids: torch.Tensor | None = None):
        super().__init__(model)
        if per_token and answer_ids is not None:
            raise ValueError("the MLM-head form classifies whole texts, not tokens")
        self.pad_id, self.per_token = int(pad_id), per_token
        self.register_buffer("answer_ids", None if answer_ids is None else torch.as_tensor(answer_ids).long())

    def forward(self, batch: torch.Tensor, keys: torch.Tensor, **ctx):
        ids, labels = batch[:, 0], batch[:, 1]  # (B, L) each
        logits = logits_of(self.model(input_ids=ids, attention_mask=(ids != self.pad_id).long())).float()
        if self.answer_ids is not None:  # (B, L, V): one labelled slot per row
            at = labels != -100
            if not bool((at.sum(1) == 1).all()):
                raise ValueError("each example of the MLM-head form needs exactly one labelled <mask> slot")
            slot, y = logits[at], labels[at]  # (B, V), (B,)
            loss = F.cross_entropy(slot, self.answer_ids[y])
            pred = slot[:, self.answer_ids].argmax(-1)
        elif self.per_token:  # (B, L, C)
            keep = labels != -100
            loss = F.cross_entropy(logits[keep], labels[keep])
            pred, y = logits[keep].argmax(-1), labels[keep]
        else:  # (B, C)
            y = labels[:, 0]
            loss = F.cross_entropy(logits, y)
            pred = logits.argmax(-1)
        return loss, {"acc": (pred == y).float().mean().detach()}
