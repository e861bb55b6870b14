"""Masked-LM recipes with word-level corruption: ``mlm-wwm`` (whole-word), ``mlm-span`` (SpanBERT) and
``mlm-ngram`` (ERNIE-Gram n-grams, fine-grained targets). Launch: ``masklab train --recipe mlm-span``.

Words come from the tokenizer's vocabulary marks (WordPiece ``##``; byte-level space symbols, so a word is a
whitespace-delimited chunk); the n-gram lexicon is built by PMI from the training windows.
"""

from __future__ import annotations

from dataclasses import dataclass

from masklab.collate import word_start_table
from masklab.corrupt.ngram import NgramLexicon
from masklab.corrupt.spans import LENGTHS
from masklab.objectives.mlm import WORD_CORRUPTIONS, CorruptionMLM
from masklab.train.recipes.base import SMALL_BPE, Task, register
from masklab.train.recipes.mlm import MLMRecipe


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
        if self.strategy not in WORD_CORRUPTIONS:
            raise ValueError(f"strategy must be one of {sorted(WORD_CORRUPTIONS)}, got {self.strategy!r}")
        if self.span_lengths not in LENGTHS:
            raise ValueError(f"span_lengths must be one of {LENGTHS}, got {self.span_lengths!r}")
        if self.span_max < 1 or self.span_gap < 0:
            raise ValueError("span_max must be >= 1 and span_gap >= 0")

    def build_objective(self, model, info):
        mix = (self.mask_frac, self.random_frac, 1.0 - self.mask_frac - self.random_frac)
        return CorruptionMLM(
            model,
            info,
            WORD_CORRUPTIONS[self.strategy],
            prob=self.mask_prob,
            mix=mix,
            span_lengths=self.span_lengths,
            span_max=self.span_max,
            span_gap=self.span_gap,
        )

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
