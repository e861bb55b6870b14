"""Masked-LM recipes with word-level corruption: ``mlm-wwm`` (whole-word), ``mlm-span`` (SpanBERT) and
``mlm-ngram`` (ERNIE-Gram n-grams, fine-grained targets). Launch: ``masklab train --recipe mlm-span``.

Words come from the tokenizer's vocabulary marks (WordPiece ``##``; byte-level space symbols, so a word is a
whitespace-delimited chunk); the n-gram lexicon is built by PMI from the training windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from masklab.collate import word_start_table
from masklab.corrupt.ngram import NgramLexicon, ngram_mask
from masklab.corrupt.spans import LENGTHS, span_mask
from masklab.corrupt.tokens import whole_word_mask, word_ids_from_starts
from masklab.objectives.mlm import MLM
from masklab.train.recipes.base import SMALL_BPE, Task, register
from masklab.train.recipes.mlm import MLMRecipe


class CorruptionMLM(MLM):
    """MLM whose selection is a word-level corruption ``corrupt(objective, batch, keys) -> Corruption``."""

    def __init__(self, model, info, corrupt, **kw):
        super().__init__(model, info, **kw)
        self.corrupt = corrupt
        self.register_buffer("starts", torch.zeros(0, dtype=torch.bool), persistent=False)
        self.lexicon: NgramLexicon | None = None

    def word_ids(self, batch: torch.Tensor) -> torch.Tensor:
        can = ~torch.isin(batch, torch.tensor(self.info.special_ids, device=batch.device))
        return word_ids_from_starts(batch, self.starts, can)

    def forward(self, batch, keys, **_):
        import math

        import torch.nn.functional as F

        from masklab.corrupt import IGNORE_INDEX
        from masklab.objectives.base import logits_of

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
    return dict(
        mask_id=o.info.mask_id, vocab_size=o.info.vocab_size, special_ids=o.info.special_ids, mix=o.mix
    )


def _wwm(o, batch, keys):
    return whole_word_mask(batch, keys, o.word_ids(batch), prob=o.prob, **_common(o))


def _span(o, batch, keys):
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


def _ngram(o, batch, keys):
    return ngram_mask(batch, keys, o.lexicon, prob=o.prob, **_common(o))


@dataclass
class WordMLMRecipe(MLMRecipe):
    strategy: str = "whole_word"  # whole_word | span | ngram
    span_lengths: str = "geometric"  # SpanBERT: geometric p=0.2 clipped at 10 (also poisson, uniform, fixed)
    span_max: int = 10  # longest span in words
    span_gap: int = 0  # minimum free words between spans
    lexicon_size: int = 20000  # n-grams kept per n in the PMI lexicon (ERNIE-Gram's V_N)
    lexicon_min_count: int = 5  # an n-gram must occur this often to be scored

    def __post_init__(self):
        super().__post_init__()
        if self.strategy not in _CORRUPT:
            raise ValueError(f"strategy must be one of {sorted(_CORRUPT)}, got {self.strategy!r}")
        if self.span_lengths not in LENGTHS:
            raise ValueError(f"span_lengths must be one of {LENGTHS}, got {self.span_lengths!r}")
        if self.span_max < 1 or self.span_gap < 0:
            raise ValueError("span_max must be >= 1 and span_gap >= 0")

    def build_objective(self, model, info):
        mix = (self.mask_frac, self.random_frac, 1.0 - self.mask_frac - self.random_frac)
        o = CorruptionMLM(model, info, _CORRUPT[self.strategy], prob=self.mask_prob, mix=mix)
        o.span_lengths, o.span_max, o.span_gap = self.span_lengths, self.span_max, self.span_gap
        return o

    def build(self) -> Task:
        task = super().build()
        o = task.objective
        o.starts = word_start_table(task.tokenizer)
        if self.strategy == "ngram":
            o.lexicon = NgramLexicon.build(
                task.train[:4096],
                o.info.vocab_size,
                size=self.lexicon_size,
                min_count=self.lexicon_min_count,
                special_ids=o.info.special_ids,
            )
        return task


_CORRUPT = {"whole_word": _wwm, "span": _span, "ngram": _ngram}


def _recipe(strategy: str) -> WordMLMRecipe:
    return WordMLMRecipe(strategy=strategy, **SMALL_BPE)


@register("mlm-wwm", "BERT whole-word masking (80/10/10 per token) on stdlib code, BPE-4096, small preset")
def mlm_wwm():
    return _recipe("whole_word")


@register("mlm-span", "SpanBERT span masking (Geo(0.2) words, max 10, exact budget) on stdlib code, BPE-4096")
def mlm_span():
    return _recipe("span")


@register("mlm-ngram", "ERNIE-Gram n-gram masking with a PMI lexicon (n <= 3) on stdlib code, BPE-4096")
def mlm_ngram():
    return _recipe("ngram")
