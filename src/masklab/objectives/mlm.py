"""Masked language modelling (BERT, Devlin et al. 2019, Sec. 3.1): 15% of tokens, 80/10/10 mask/random/keep.

Loss: mean cross-entropy over the selected positions.

:class:`CorruptionMLM` is the same loss with a word-level selection (:data:`WORD_CORRUPTIONS`): whole-word
masking (BERT WWM), SpanBERT spans (Joshi et al. 2020, Sec. 3.1: Geo(0.2) span lengths in words, clipped at 10)
or ERNIE-Gram n-grams (Xiao et al. 2021, Sec. 3.2; fine-grained targets only, lexicon by PMI as in
:mod:`masklab.corrupt.ngram`). Words come from the
vocabulary's word-start table ``starts`` (:func:`masklab.collate.word_start_table`), which the recipe sets.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from masklab.corrupt import IGNORE_INDEX, random_mask
from masklab.corrupt.ngram import NgramLexicon, ngram_mask
from masklab.corrupt.record import Corruption
from masklab.corrupt.spans import span_mask
from masklab.corrupt.tokens import whole_word_mask, word_ids_from_starts
from masklab.data.tokenizers import TokenInfo
from masklab.objectives.base import Objective, logits_of

__all__ = ["MLM", "CorruptionMLM", "WORD_CORRUPTIONS"]


class MLM(Objective):
    name = "mlm"

    def __init__(self, model, info: TokenInfo, prob: float = 0.15, mix=(0.8, 0.1, 0.1)):
        super().__init__(model)
        self.info, self.prob, self.mix = info, prob, tuple(mix)

    def forward(self, batch, keys, **_):
        c = random_mask(
            batch,
            keys,
            mask_id=self.info.mask_id,
            vocab_size=self.info.vocab_size,
            special_ids=self.info.special_ids,
            prob=self.prob,
            mix=self.mix,
        )
        logits = logits_of(self.model(input_ids=c.inputs))  # (B, L, V)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), c.targets.flatten(), ignore_index=IGNORE_INDEX)
        hit = (logits.argmax(-1) == c.targets) & c.mask
        acc = hit.sum() / c.mask.sum().clamp(min=1)
        return loss, {"masked_acc": acc.detach(), "bits": loss.detach() / math.log(2)}


class CorruptionMLM(MLM):
    """MLM whose selection is a word-level corruption ``corrupt(objective, batch, keys) -> Corruption`` (one of
    :data:`WORD_CORRUPTIONS`). The caller sets ``starts`` ([V] bool word starts) and, for n-grams, ``lexicon``;
    ``span_lengths``, ``span_max`` and ``span_gap`` go to :func:`masklab.corrupt.spans.span_mask`."""

    def __init__(
        self,
        model,
        info: TokenInfo,
        corrupt: Callable[..., Corruption],
        prob: float = 0.15,
        mix=(0.8, 0.1, 0.1),
        *,
        span_lengths: str = "geometric",
        span_max: int = 10,
        span_gap: int = 0,
    ):
        super().__init__(model, info, prob=prob, mix=mix)
        self.corrupt = corrupt
        self.span_lengths, self.span_max, self.span_gap = span_lengths, span_max, span_gap
        self.register_buffer("starts", torch.zeros(0, dtype=torch.bool), persistent=False)
        self.lexicon: NgramLexicon | None = None

    def word_ids(self, batch: torch.Tensor) -> torch.Tensor:
        can = ~torch.isin(batch, torch.tensor(self.info.special_ids, device=batch.device))
        return word_ids_from_starts(batch, self.starts, can)

    def forward(self, batch, keys, **_):
        c = self.corrupt(self, batch, keys)
        logits = logits_of(self.model(input_ids=c.inputs))  # (B, L, V)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), c.targets.flatten(), ignore_index=IGNORE_INDEX)
        hit = (logits.argmax(-1) == c.targets) & c.mask
        return loss, {
            "masked_acc": (hit.sum() / c.mask.sum().clamp(min=1)).detach(),
            "bits": loss.detach() / math.log(2),
            "mask_frac": c.mask.float().mean().detach(),
        }


def _common(o: CorruptionMLM) -> dict:
    return dict(mask_id=o.info.mask_id, vocab_size=o.info.vocab_size, special_ids=o.info.special_ids, mix=o.mix)


def whole_word(o: CorruptionMLM, batch, keys) -> Corruption:
    return whole_word_mask(batch, keys, o.word_ids(batch), prob=o.prob, **_common(o))


def span(o: CorruptionMLM, batch, keys) -> Corruption:
    return span_mask(
        batch,
        keys,
        word_ids=o.word_ids(batch),
        prob=o.prob,
        lengths=o.span_lengths,
        high=o.span_max,
        min_gap=o.span_gap,
        **_common(o),
    )


def ngram(o: CorruptionMLM, batch, keys) -> Corruption:
    return ngram_mask(batch, keys, o.lexicon, prob=o.prob, **_common(o))


WORD_CORRUPTIONS = {"whole_word": whole_word, "span": span, "ngram": ngram}
