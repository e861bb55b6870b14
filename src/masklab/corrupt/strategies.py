"""The corruption registries: one signature per kind of input.

    corruption = TOKEN.get(name)(ids, keys, info, can, **options) -> Corruption    # token ids [B, L]
    patch_mask = PATCH.get(name)(grid, keys, **options) -> PatchMask              # an (H, W) patch grid
    frame_mask = FRAME.get(name)(shape, keys, **options) -> FrameMask             # (B, T) frames

Token strategies:

``ids`` [B, L] token ids, ``keys`` [B] example keys (:mod:`masklab.corrupt.keyed`), ``info`` the
:class:`~masklab.data.tokenizers.TokenInfo` of the tokenizer, ``can`` [B, L] bool eligible positions or None
(then every non-special position). The collators, the objectives and ``masklab show corruption`` all call these
entries, so one (seed, epoch, index) gives one mask whichever path draws it.

Options: ``prob``, ``mix``, ``count`` (random, whole_word, span, meap), ``word_ids`` [B, L] (whole_word, span;
default: words from ``info.word_starts``), ``lexicon`` (ngram), span options (``lengths``, ``high``, ``min_gap``,
... of :func:`masklab.corrupt.spans.span_mask`), ``t`` [B] (mdm), ``max_predictions`` (electra).

Patch strategies take ``ratio`` and their generator's options (:mod:`masklab.corrupt.patches`); ``hpm`` needs
``pred_loss`` [B, N] (the model's predicted reconstruction loss) and ``referring`` needs ``boxes`` or
``region``. Frame strategies take :func:`masklab.corrupt.frames.span_mask`'s options; ``ask2mask`` needs
``confidence`` [B, T].
"""

from __future__ import annotations

import torch

from masklab.corrupt import patches as P
from masklab.corrupt.diffusion import mdm_noise
from masklab.corrupt.frames import FrameMask, ask2mask
from masklab.corrupt.frames import span_mask as frame_spans
from masklab.corrupt.meap import meap_mask
from masklab.corrupt.ngram import ngram_mask
from masklab.corrupt.record import Corruption
from masklab.corrupt.replace import electra_mask
from masklab.corrupt.spans import span_mask
from masklab.corrupt.tokens import eligible, random_mask, whole_word_mask, word_ids_from_starts
from masklab.registry import Registry

__all__ = ["TOKEN", "PATCH", "FRAME", "word_ids_of", "WORD_LEVEL", "MLM_STRATEGIES"]

TOKEN = Registry("token", "token corruptions: (ids, keys, info, can, **options) -> Corruption")
PATCH = Registry("patch", "image patch masks: (grid, keys, **options) -> PatchMask")
FRAME = Registry("frame", "frame (time step) masks: (shape, keys, **options) -> FrameMask")

WORD_LEVEL = ("whole_word", "span")  # strategies that read word boundaries
MLM_STRATEGIES = ("random", "whole_word", "span", "ngram")  # the BERT-style selections MLMCollator offers


def _can(ids: torch.Tensor, info, can: torch.Tensor | None) -> torch.Tensor:
    ok = eligible(ids, info.special_ids)
    return ok if can is None else ok & can.bool()


def word_ids_of(ids: torch.Tensor, info, can: torch.Tensor | None) -> torch.Tensor:
    """[B, L] word id per token (-1 outside words) from the one word-start table ``info.word_starts``."""
    if info.word_starts is None:
        raise ValueError("this tokenizer marks no word boundaries: pass word_ids for word-level masking")
    return word_ids_from_starts(ids, info.word_starts.to(ids.device), _can(ids, info, can))


def _common(info, can, mix) -> dict:
    return dict(mask_id=info.mask_id, vocab_size=info.vocab_size, special_ids=info.special_ids, mix=tuple(mix), can=can)


@TOKEN.register("random", "BERT: each eligible token with prob, then 80/10/10 mask/random/keep")
def random(ids, keys, info, can=None, *, prob=0.15, mix=(0.8, 0.1, 0.1), count=None) -> Corruption:
    return random_mask(ids, keys, prob=prob, count=count, **_common(info, can, mix))


@TOKEN.register("whole_word", "BERT WWM: each word with prob, all its pieces corrupted (80/10/10 per token)")
def whole_word(ids, keys, info, can=None, *, prob=0.15, mix=(0.8, 0.1, 0.1), count=None, word_ids=None):
    wid = word_ids if word_ids is not None else word_ids_of(ids, info, can)
    return whole_word_mask(ids, keys, wid, prob=prob, count=count, **_common(info, can, mix))


@TOKEN.register("span", "SpanBERT: Geo(0.2) spans of whole words, clipped at 10, to a prob budget")
def span(ids, keys, info, can=None, *, prob=0.15, mix=(0.8, 0.1, 0.1), count=None, word_ids=None, **span_options):
    wid = word_ids if word_ids is not None else word_ids_of(ids, info, can)
    return span_mask(ids, keys, word_ids=wid, prob=prob, count=count, **_common(info, can, mix), **span_options)


@TOKEN.register("ngram", "ERNIE-Gram: lexicon n-grams and single tokens as units, fine-grained targets")
def ngram(ids, keys, info, can=None, *, prob=0.15, mix=(0.8, 0.1, 0.1), lexicon=None) -> Corruption:
    if lexicon is None:
        raise ValueError("strategy 'ngram' needs lexicon=masklab.corrupt.ngram.NgramLexicon.build(corpus, ...)")
    return ngram_mask(ids, keys, lexicon, prob=prob, pad_id=info.pad_id, **_common(info, can, mix))


@TOKEN.register("mdm", "masked diffusion: each token masked with the row's time t, weight 1/t")
def mdm(ids, keys, info, can=None, *, t) -> Corruption:
    return mdm_noise(ids, keys, t, mask_id=info.mask_id, special_ids=info.never_mask, can=can)


@TOKEN.register("meap", "MEAP: round(prob n) tokens of each row become the mask token; targets the clean ids")
def meap(ids, keys, info, can=None, *, prob=0.15, count=None) -> Corruption:
    return meap_mask(
        ids, keys, mask_id=info.mask_id, special_ids=info.never_mask, prob=prob, count=count, attention_mask=can
    )


@TOKEN.register("electra", "ELECTRA generator input: k positions per row without replacement, 85/0/15")
def electra(ids, keys, info, can=None, *, prob=0.15, mix=(0.85, 0.0, 0.15), max_predictions=None):
    return electra_mask(ids, keys, prob=prob, max_predictions=max_predictions, **_common(info, can, mix))


# ------------------------------------------------------------------------------------------------------------
# patch masks: grid (H, W), keys [B]; the batch size is len(keys)


@PATCH.register("random", "MAE: a uniform random subset of round(ratio N) patches (default 0.75)")
def random_patches(grid, keys, *, ratio=0.75, **options):
    return P.random_patches(grid, ratio, keys=keys, **options)


@PATCH.register("block", "BEiT: random rectangular blocks of patches up to round(ratio N) (default 0.4)")
def block_patches(grid, keys, *, ratio=0.4, **options):
    return P.block_patches(grid, ratio, keys=keys, **options)


@PATCH.register("simmim", "SimMIM: random masking of coarse cells of patches (default ratio 0.6)")
def simmim_patches(grid, keys, *, ratio=0.6, **options):
    return P.simmim_patches(grid, ratio, keys=keys, **options)


def _colormae(color: str):
    def colormae(grid, keys, *, ratio=0.75, **options):
        return P.colormae_patches(grid, color, ratio, keys=keys, **options)

    colormae.__name__ = f"colormae_{color}"
    return colormae


for _color in P.COLORS:
    PATCH.register(
        f"colormae-{_color}", f"ColorMAE: the patches where filtered {_color} noise is smallest", _colormae(_color)
    )


@PATCH.register("hpm", "HPM: the patches the model predicts hardest, easy-to-hard over progress (needs pred_loss)")
def hpm_patches(grid, keys, *, pred_loss, ratio=0.75, **options):
    return P.hpm_patches(pred_loss, grid, ratio, keys=keys, **options)


@PATCH.register(
    "referring",
    "OneRef: the referred region (grown 1 patch) masked at inside_ratio 0.75, the rest at ratio 0.35 (needs boxes)",
)
def referring_patches(grid, keys, *, ratio=0.35, **options):
    return P.referring_patches(grid, ratio=ratio, keys=keys, **options)


# ------------------------------------------------------------------------------------------------------------
# frame masks: shape (B, T), keys [B]


@FRAME.register("span", "wav2vec 2.0 / W2v-BERT spans: starts with prob mask_prob, mask_length frames each")
def spans(shape, keys, *, mask_prob=0.65, mask_length=10, **options) -> FrameMask:
    mask = frame_spans(shape, mask_prob, mask_length, keys=keys, **options)
    return FrameMask(mask, torch.ones(mask.shape[0], device=mask.device))


@FRAME.register("ask2mask", "Ask2Mask: span starts drawn by scorer confidence, utterance loss weights")
def ask2mask_spans(shape, keys, *, confidence, mask_prob=0.65, mask_length=10, **options) -> FrameMask:
    if tuple(confidence.shape) != tuple(shape):
        raise ValueError(f"confidence has shape {tuple(confidence.shape)}, the frames {tuple(shape)}")
    return ask2mask(confidence, mask_prob, mask_length, keys=keys, **options)
