"""Corruption masks: what the model must not see. Pure tensor functions with keyed randomness.

Token sequences: ``random_mask`` (BERT 80/10/10), ``whole_word_mask``, ``span_mask`` (SpanBERT), ``ngram_mask``
(ERNIE-Gram), ``meap_mask``, ``electra_mask`` / ``sample_replacements`` / ``rtd_labels`` (replaced-token
detection), ``score_guided_mask`` (Ask2Mask, HPM for tokens), ``mdm_noise`` / ``mdiff4str_noise`` (masked
diffusion). Image grids: ``masklab.corrupt.patches``. Speech and signal frames: ``masklab.corrupt.frames``
(its ``span_mask`` follows wav2vec2).
"""

from masklab.corrupt import frames, patches
from masklab.corrupt.diffusion import mdiff4str_noise, mdm_noise, sample_t
from masklab.corrupt.guided import easy_to_hard, score_guided_mask
from masklab.corrupt.keyed import example_keys
from masklab.corrupt.meap import meap_mask
from masklab.corrupt.ngram import NgramLexicon, ngram_mask
from masklab.corrupt.record import IGNORE_INDEX, Corruption
from masklab.corrupt.replace import electra_mask, rtd_labels, sample_replacements
from masklab.corrupt.spans import span_mask
from masklab.corrupt.tokens import random_mask, whole_word_mask

__all__ = [
    "Corruption",
    "IGNORE_INDEX",
    "example_keys",
    "random_mask",
    "whole_word_mask",
    "span_mask",
    "NgramLexicon",
    "ngram_mask",
    "meap_mask",
    "electra_mask",
    "sample_replacements",
    "rtd_labels",
    "score_guided_mask",
    "easy_to_hard",
    "mdm_noise",
    "sample_t",
    "mdiff4str_noise",
    "patches",
    "frames",
]
