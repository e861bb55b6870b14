"""The RAMP reader (MaskSearch, Wu et al. 2025): a masked LM fills the masked spans of a docstring, reading a
retrieved passage before it or nothing.

The paper trains an LLM agent to search and then write each ``[mask]``'s answer; this miniature keeps the task
(fill every masked span, scored by exact match) and the retrieval (BM25 passages in the input, as a
retrieval-augmented reader), and drops the agent's planning and rewriting. A row is
``[bos] passage [eos] masked docstring`` (:func:`masklab.data.ramp.encode_reader`): each span is a slot of
``slot`` mask tokens whose targets are the span's tokens then ``eos``, so the loss is the cross-entropy of the
slots' tokens and a span counts as filled only when every token of its slot is right.

An example is a [2, L] row (ids, labels with -100 off the slots), as for :mod:`masklab.objectives.finetune`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from masklab.objectives.base import Objective, logits_of

__all__ = ["RAMPReader", "span_hits"]


def span_hits(pred: torch.Tensor, labels: torch.Tensor, slot: int, max_spans: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(hits [B, max_spans] bool, spans [B]): whether every token of each slot is predicted right, and how many
    slots each row has. Slots are the labelled positions taken ``slot`` at a time, in order; hits past a row's
    span count are False."""
    at = labels != -100  # (B, L)
    spans = at.sum(1) // slot
    if bool((at.sum(1) % slot).any()) or bool((spans > max_spans).any()):
        raise ValueError(f"labels must hold whole slots of {slot} tokens, at most {max_spans} per row")
    which = ((at.cumsum(1) - 1) // slot).clamp(0, max_spans - 1)  # (B, L): the slot of each labelled position
    wrong = torch.zeros(labels.shape[0], max_spans, dtype=torch.long, device=labels.device)
    wrong.scatter_add_(1, which, (at & (pred != labels)).long())
    present = torch.arange(max_spans, device=labels.device) < spans[:, None]
    return present & (wrong == 0), spans


class RAMPReader(Objective):
    """``forward(batch [B, 2, L], keys) -> (loss, {"span_em", "example_em"})``: slot cross-entropy; exact match
    of spans and of whole examples (every span filled)."""

    name = "ramp"
    eval_batch_size = 64

    def __init__(self, model, pad_id: int, slot: int, max_spans: int = 4):
        super().__init__(model)
        if slot < 1 or max_spans < 1:
            raise ValueError(f"slot and max_spans must be >= 1, got {slot} and {max_spans}")
        self.pad_id, self.slot, self.max_spans = int(pad_id), int(slot), int(max_spans)

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        """Argmax tokens [B, L] of the model on the rows' ids."""
        ids = batch[:, 0]
        return logits_of(self.model(input_ids=ids, attention_mask=(ids != self.pad_id).long())).argmax(-1)

    def forward(self, batch: torch.Tensor, keys: torch.Tensor, **ctx):
        ids, labels = batch[:, 0], batch[:, 1]  # (B, L) each
        logits = logits_of(self.model(input_ids=ids, attention_mask=(ids != self.pad_id).long())).float()
        at = labels != -100
        loss = F.cross_entropy(logits[at], labels[at])  # (N_slot_tokens, V): the slots' tokens only
        hits, spans = span_hits(logits.argmax(-1), labels, self.slot, self.max_spans)
        metrics = {
            "span_em": (hits.sum() / spans.sum().clamp(min=1)).detach(),
            "example_em": (hits.sum(1) == spans).float().mean().detach(),
        }
        return loss, metrics
