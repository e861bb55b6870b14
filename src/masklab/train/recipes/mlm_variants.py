"""Masked-LM recipes with word-level corruption: ``mlm-wwm`` (whole-word), ``mlm-span`` (SpanBERT) and
``mlm-ngram`` (ERNIE-Gram). Launch: ``masklab train --recipe mlm-span``.

Words come from the tokenizer's vocabulary marks (WordPiece ``##``; byte-level space symbols, so a word is a
whitespace-delimited chunk). ``mlm-ngram`` trains ERNIE-Gram's comprehensive n-gram prediction by default
(:mod:`masklab.objectives.ngram`: one [MASK] per n-gram, V_F u V_N identities plus fine-grained tokens, lexicon
ranked by the t-test from the training windows); ``ngram_mode=explicit`` keeps the coarse prediction only,
``ngram_mode=contiguous`` is contiguously masked n-grams with fine-grained targets (the paper's "contiguously MLM"), and
``generator=true`` adds the paper's enhanced n-gram relation modelling (Fig. 4).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

from masklab.collate import word_start_table
from masklab.corrupt.ngram import SCORES, NgramLexicon
from masklab.corrupt.replace import METHODS
from masklab.corrupt.spans import LENGTHS
from masklab.objectives.mlm import WORD_CORRUPTIONS, CorruptionMLM
from masklab.objectives.ngram import MODES, ErnieGram
from masklab.train.recipes.base import SMALL_BPE, Task, register, seeded
from masklab.train.recipes.mlm import MLMRecipe


@dataclass
class WordMLMRecipe(MLMRecipe):
    strategy: str = "whole_word"  # whole_word | span | ngram
    span_lengths: str = "geometric"  # SpanBERT: geometric p=0.2 clipped at 10 (also poisson, uniform, fixed)
    span_max: int = 10  # longest span in words
    span_gap: int = 0  # minimum free words between spans
    lexicon_size: int = 20000  # n-grams kept per n in the lexicon (ERNIE-Gram's V_N)
    lexicon_min_count: int = 5  # an n-gram must occur this often to be scored
    lexicon_score: str = "tstat"  # tstat (ERNIE-Gram's t-test) | pmi: how the lexicon ranks n-grams

    def __post_init__(self):
        super().__post_init__()
        if self.strategy not in WORD_CORRUPTIONS:
            raise ValueError(f"strategy must be one of {sorted(WORD_CORRUPTIONS)}, got {self.strategy!r}")
        if self.span_lengths not in LENGTHS:
            raise ValueError(f"span_lengths must be one of {LENGTHS}, got {self.span_lengths!r}")
        if self.span_max < 1 or self.span_gap < 0:
            raise ValueError("span_max must be >= 1 and span_gap >= 0")
        if self.lexicon_score not in SCORES:
            raise ValueError(f"lexicon_score must be one of {SCORES}, got {self.lexicon_score!r}")

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
            o.lexicon = self.lexicon(task)
        return task

    def lexicon(self, task: Task) -> NgramLexicon:
        """The n-gram lexicon V_N, counted on the first 4096 training windows."""
        info = task.objective.info
        return NgramLexicon.build(
            task.train[:4096],
            info.vocab_size,
            size=self.lexicon_size,
            min_count=self.lexicon_min_count,
            special_ids=info.special_ids,
            score=self.lexicon_score,
        )


NGRAM_MODES = (*MODES, "contiguous")  # ERNIE-Gram Eq. 5, Eq. 4, or contiguously masked n-grams


@dataclass
class ErnieGramRecipe(WordMLMRecipe):
    """ERNIE-Gram (Xiao et al. 2021). The defaults train the paper's method: comprehensive n-gram prediction over
    a t-test lexicon; mask_frac / random_frac apply to ``ngram_mode=contiguous`` only (an explicit n-gram is one
    [MASK], or with ``generator`` a sampled identity)."""

    strategy: str = "ngram"  # always ngram
    ngram_mode: str = "comprehensive"  # comprehensive (Eq. 5) | explicit (Eq. 4) | contiguous (fine-grained only)
    max_predictions: int = 0  # masked tokens per row at most (BERT's max_predictions_per_seq); 0: see below
    generator: bool = False  # enhanced n-gram relation modelling: a generator samples n-grams for the [MASK]s
    gen_layers: float = 0.5  # generator depth as a fraction of the model's (same width)
    rtd_weight: float = 1.0  # weight of the replaced-token-detection loss when generator is on
    sampling: str = "multinomial"  # multinomial (keyed inverse CDF) | gumbel: how generator samples are drawn

    def __post_init__(self):
        super().__post_init__()
        if self.strategy != "ngram":
            raise ValueError(f"ERNIE-Gram masks n-grams: strategy must be 'ngram', got {self.strategy!r}")
        if self.ngram_mode not in NGRAM_MODES:
            raise ValueError(f"ngram_mode must be one of {NGRAM_MODES}, got {self.ngram_mode!r}")
        if self.max_predictions < 0 or self.rtd_weight < 0 or not 0 < self.gen_layers <= 1:
            raise ValueError("max_predictions and rtd_weight must be >= 0 and gen_layers in (0, 1]")
        if self.sampling not in METHODS:
            raise ValueError(f"sampling must be one of {METHODS}, got {self.sampling!r}")
        if self.generator and self.ngram_mode == "contiguous":
            raise ValueError("generator samples explicit n-gram identities: use ngram_mode=comprehensive or explicit")
        if self.lora and self.ngram_mode != "contiguous":
            raise ValueError("lora: ERNIE-Gram trains new V_N heads beside the model; use lora=0")

    def predictions(self) -> int:
        """Masked tokens per row at most: ``max_predictions``, or prob L + 4 sqrt(prob L) rounded up (on stdlib
        code, BPE-4096, L=256, the cap removes n-grams from 0.05% of the rows)."""
        if self.max_predictions:
            return self.max_predictions
        expected = self.mask_prob * self.seq_len
        return max(1, math.ceil(expected + 4 * math.sqrt(expected)))

    def build_objective(self, model, info):
        if self.ngram_mode == "contiguous":
            return super().build_objective(model, info)
        generator = None
        if self.generator:
            gcfg = copy.deepcopy(model.config)
            gcfg.num_hidden_layers = max(1, round(model.config.num_hidden_layers * self.gen_layers))
            if getattr(gcfg, "layer_types", None) is not None:  # per-layer attention kinds follow the depth
                gcfg.layer_types = list(gcfg.layer_types)[: gcfg.num_hidden_layers]
            with seeded(self.seed + 1):
                generator = type(model)._from_config(gcfg, attn_implementation="sdpa")
        objective = ErnieGram(
            model, info, prob=self.mask_prob, mode=self.ngram_mode, max_predictions=self.predictions(),
            generator=generator, rtd_weight=self.rtd_weight, sampling=self.sampling,
        )  # fmt: skip
        objective.seq_len = self.seq_len
        return objective

    def build(self) -> Task:
        if self.ngram_mode == "contiguous":
            return super().build()
        task = MLMRecipe.build(self)  # ERNIE-Gram reads no word table
        lexicon = self.lexicon(task)
        with seeded(self.seed + 3):
            task.objective.set_lexicon(lexicon)
        return task


def _recipe(strategy: str) -> WordMLMRecipe:
    return WordMLMRecipe(strategy=strategy, **SMALL_BPE)


@register("mlm-wwm", "BERT whole-word masking (80/10/10 per token) on stdlib code, BPE-4096, small preset")
def mlm_wwm():
    return _recipe("whole_word")


@register("mlm-span", "SpanBERT span masking (Geo(0.2) words, max 10, exact budget) on stdlib code, BPE-4096")
def mlm_span():
    return _recipe("span")


@register("mlm-ngram", "ERNIE-Gram: comprehensive explicit n-gram MLM, t-test lexicon (n <= 3), stdlib code, BPE-4096")
def mlm_ngram():
    return ErnieGramRecipe(**SMALL_BPE)
