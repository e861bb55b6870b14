"""Masked language modelling (BERT, Devlin et al. 2019, Sec. 3.1): 15% of tokens, 80/10/10 mask/random/keep.

Loss: mean cross-entropy over the selected positions.

:class:`CorruptionMLM` is the same loss with a word-level selection from the token registry
(:data:`masklab.corrupt.strategies.TOKEN`: "whole_word", "span" or "ngram"): whole-word
masking (BERT WWM), SpanBERT spans (Joshi et al. 2020, Sec. 3.1: Geo(0.2) span lengths in words, clipped at 10)
or contiguously masked ERNIE-Gram n-gram units (Xiao et al. 2021's "contiguously MLM" baseline: fine-grained
targets only, lexicon from :mod:`masklab.corrupt.ngram`; ERNIE-Gram's own explicit and comprehensive n-gram
prediction is :class:`masklab.objectives.ngram.ErnieGram`). Words come from the one word-start table of the
tokenizer, ``info.word_starts`` (:func:`masklab.data.tokenizers.word_start_table`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from masklab.corrupt import IGNORE_INDEX
from masklab.corrupt.ngram import NgramLexicon
from masklab.corrupt.strategies import TOKEN, WORD_LEVEL
from masklab.corrupt.tokens import word_ids_from_starts
from masklab.data.tokenizers import TokenInfo
from masklab.objectives.base import Objective, logits_of

__all__ = ["MLM", "CorruptionMLM", "WORD_CORRUPTIONS"]


class MLM(Objective):
    name = "mlm"

    def __init__(self, model, info: TokenInfo, prob: float = 0.15, mix=(0.8, 0.1, 0.1)):
        super().__init__(model)
        self.info, self.prob, self.mix = info, prob, tuple(mix)

    def forward(self, batch, keys, **_):
        c = TOKEN.get("random")(batch, keys, self.info, None, prob=self.prob, mix=self.mix)
        logits = logits_of(self.model(input_ids=c.inputs))  # (B, L, V)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), c.targets.flatten(), ignore_index=IGNORE_INDEX)
        hit = (logits.argmax(-1) == c.targets) & c.mask
        acc = hit.sum() / c.mask.sum().clamp(min=1)
        return loss, {"masked_acc": acc.detach(), "bits": loss.detach() / math.log(2)}


class CorruptionMLM(MLM):
    """MLM whose selection is the token strategy ``corrupt`` ("whole_word", "span" or "ngram" of
    :data:`masklab.corrupt.strategies.TOKEN`). Words come from ``info.word_starts`` (or ``starts``, a [V] bool
    word-start table, when set); n-grams need ``lexicon``. ``span_lengths``, ``span_max`` and ``span_gap`` go to
    :func:`masklab.corrupt.spans.span_mask`."""

    def __init__(
        self,
        model,
        info: TokenInfo,
        corrupt: str,
        prob: float = 0.15,
        mix=(0.8, 0.1, 0.1),
        *,
        span_lengths: str = "geometric",
        span_max: int = 10,
        span_gap: int = 0,
    ):
        super().__init__(model, info, prob=prob, mix=mix)
        if corrupt not in WORD_CORRUPTIONS:
            raise ValueError(f"corrupt must be one of {list(WORD_CORRUPTIONS)}, got {corrupt!r}")
        self.corrupt = corrupt
        self.span_lengths, self.span_max, self.span_gap = span_lengths, span_max, span_gap
        self.register_buffer("starts", torch.zeros(0, dtype=torch.bool), persistent=False)
        self.lexicon: NgramLexicon | None = None

    def word_ids(self, batch: torch.Tensor) -> torch.Tensor | None:
        """Word ids from ``starts`` when the caller set one; None lets the strategy read ``info.word_starts``."""
        if self.starts.numel() == 0:
            return None
        can = ~torch.isin(batch, torch.tensor(self.info.special_ids, device=batch.device))
        return word_ids_from_starts(batch, self.starts, can)

    def options(self, batch: torch.Tensor) -> dict:
        opts: dict = {"prob": self.prob, "mix": self.mix}
        if self.corrupt == "ngram":
            return {**opts, "lexicon": self.lexicon}
        if self.corrupt in WORD_LEVEL:
            opts["word_ids"] = self.word_ids(batch)
        if self.corrupt == "span":
            opts.update(lengths=self.span_lengths, high=self.span_max, min_gap=self.span_gap)
        return opts

    def forward(self, batch, keys, **_):
        c = TOKEN.get(self.corrupt)(batch, keys, self.info, None, **self.options(batch))
        logits = logits_of(self.model(input_ids=c.inputs))  # (B, L, V)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), c.targets.flatten(), ignore_index=IGNORE_INDEX)
        hit = (logits.argmax(-1) == c.targets) & c.mask
        return loss, {
            "masked_acc": (hit.sum() / c.mask.sum().clamp(min=1)).detach(),
            "bits": loss.detach() / math.log(2),
            "mask_frac": c.mask.float().mean().detach(),
        }


# The strategies CorruptionMLM takes, by name (each the registry entry of that name).
WORD_CORRUPTIONS = {name: name for name in ("whole_word", "span", "ngram")}
