"""Hugging Face-style collators built on :mod:`masklab.corrupt`.

Each collator takes a list of tokenized examples (dicts as ``datasets`` yields them, or bare id lists), pads
them, corrupts them with keyed randomness and returns a dict of tensors that a ``transformers`` model accepts,
so it works as ``data_collator`` in ``transformers.Trainer``, in a ``torch.utils.data.DataLoader`` and in
masklab's loop.

- :class:`MLMCollator`   input_ids, attention_mask, labels (-100 where nothing is predicted); strategy
                         "random" | "whole_word" | "span" | "ngram". Same output as
                         ``DataCollatorForLanguageModeling``.
- :class:`RTDCollator`   ELECTRA / DeBERTaV3 generator input: exactly k positions per row, without
replacement.
- :class:`MEAPCollator`  causal-LM input with random mask tokens, labels = the clean ids.
- :class:`MDMCollator`   masked-diffusion input at a per-sequence time t, labels on masked tokens.

Keyed determinism: an example's mask is a function of (seed, epoch, example index) only. The index is the
example's ``"idx"`` field when present, otherwise a hash of its token ids (so a reshuffled or re-batched
example still gets the same mask). Call :meth:`set_epoch` at each epoch for fresh masks; in
``transformers.Trainer`` pass ``callbacks=[collator.trainer_callback()]``, which does that. The Trainer's default
``remove_unused_columns=True`` drops ``idx``, ``word_ids`` and ``special_tokens_mask`` (the model's ``forward``
does not name them), so the collator falls back to the content hash and the vocabulary's word marks; set
``remove_unused_columns=False`` to key on ``idx`` and use ``word_ids`` (extra columns, strings too, are ignored).

Word boundaries (whole_word, span): the example's ``"word_ids"`` (None or -1 outside words) if present, else
its ``"offset_mapping"`` with Hugging Face's rule, else the tokenizer's continuation prefix (WordPiece
``##``).

Bad input raises ValueError: prob outside [0, 1], a tokenizer without mask token, an empty batch or example. A
row that holds only special tokens is a documented no-op (no position selected, labels all -100).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any

import numpy as np
import torch

from masklab.corrupt import keyed
from masklab.corrupt.diffusion import T_SAMPLING, mdm_noise, sample_t
from masklab.corrupt.meap import meap_mask
from masklab.corrupt.ngram import NgramLexicon, ngram_mask
from masklab.corrupt.record import Corruption
from masklab.corrupt.replace import electra_mask
from masklab.corrupt.spans import span_mask
from masklab.corrupt.tokens import (
    check_prob,
    random_mask,
    whole_word_mask,
    word_ids_from_offsets,
    word_ids_from_starts,
)

__all__ = ["MLMCollator", "RTDCollator", "MEAPCollator", "MDMCollator", "pad_examples", "STRATEGIES"]

_PASS = ("input_ids", "attention_mask", "token_type_ids")


def _rows(examples: Sequence[Any]) -> list[Mapping]:
    if not isinstance(examples, Sequence) or len(examples) == 0:
        raise ValueError("cannot collate an empty batch")
    out = [ex if type(ex) is dict or isinstance(ex, Mapping) else {"input_ids": ex} for ex in examples]
    for i, ex in enumerate(out):
        if "input_ids" not in ex:
            raise ValueError(f"example {i} has no 'input_ids' (keys: {sorted(ex)})")
        if len(ex["input_ids"]) == 0:
            raise ValueError(f"example {i} is empty: 'input_ids' has length 0")
    return out


def _flat(rows: list) -> torch.Tensor:
    """Concatenate ragged rows of ints (or of int pairs) into one int64 tensor, fast (numpy fromiter)."""
    if torch.is_tensor(rows[0]):
        return torch.cat([torch.as_tensor(r) for r in rows]).long()
    if isinstance(rows[0], np.ndarray):
        return torch.from_numpy(np.concatenate(rows)).long()
    first = next((r[0] for r in rows if len(r)), 0)
    if isinstance(first, (list, tuple)):  # offsets: pairs
        vals = np.fromiter(chain.from_iterable(chain.from_iterable(rows)), dtype=np.int64)
        return torch.from_numpy(vals.reshape(-1, len(first)))
    return torch.from_numpy(np.fromiter(chain.from_iterable(rows), dtype=np.int64))


def _pad_field(rows: list, lens: torch.Tensor, width: int, fill, left: bool) -> torch.Tensor:
    """[B, width, ...] from ragged ``rows`` (lists, arrays or tensors), right or left padded with ``fill``."""
    if not torch.is_tensor(rows[0]):  # numpy row copies: ~2x faster than a flat fromiter + scatter
        first = next((r[0] for r in rows if len(r)), 0)
        tail = tuple(np.shape(first))  # () for ids, (2,) for offsets
        arr = np.full((len(rows), width) + tail, fill, dtype=np.int64)
        for i, r in enumerate(rows):
            if len(r):
                if left:
                    arr[i, width - len(r) :] = r
                else:
                    arr[i, : len(r)] = r
        return torch.from_numpy(arr)
    flat = _flat(rows)
    pos = torch.arange(width)
    real = pos >= (width - lens)[:, None] if left else pos < lens[:, None]
    out = torch.full((len(rows), width) + tuple(flat.shape[1:]), fill, dtype=flat.dtype)
    out[real] = flat
    return out


def pad_examples(
    examples: Sequence[Any],
    pad_id: int,
    *,
    pad_to_multiple_of: int | None = None,
    left: bool = False,
    fields: Sequence[str] = ("token_type_ids", "special_tokens_mask", "offset_mapping", "word_ids"),
) -> dict:
    """Pad a list of examples into tensors: input_ids, attention_mask and any of ``fields`` present in every
    example. word_ids None becomes -1; padding gets word id -1, special_tokens_mask 1, offsets (0, 0)."""
    rows = _rows(examples)
    lens = torch.tensor([len(ex["input_ids"]) for ex in rows])
    width = int(lens.max())
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    batch = {"input_ids": _pad_field([ex["input_ids"] for ex in rows], lens, width, pad_id, left)}
    if all("attention_mask" in ex for ex in rows) and any(
        sum(ex["attention_mask"]) != len(ex["attention_mask"]) for ex in rows
    ):  # pre-padded examples
        batch["attention_mask"] = _pad_field([ex["attention_mask"] for ex in rows], lens, width, 0, left)
    else:
        batch["attention_mask"] = (
            torch.arange(width) >= (width - lens)[:, None] if left else torch.arange(width) < lens[:, None]
        ).long()
    fills = {"token_type_ids": 0, "special_tokens_mask": 1, "offset_mapping": 0, "word_ids": -1}
    for f in fields:
        if all(f in ex for ex in rows):
            vals = [ex[f] for ex in rows]
            if f == "word_ids":
                vals = [[-1 if w is None else w for w in v] for v in vals]
            batch[f] = _pad_field(vals, lens, width, fills.get(f, 0), left)
    if all("idx" in ex for ex in rows):
        batch["idx"] = torch.tensor([int(ex["idx"]) for ex in rows])
    elif any("idx" in ex for ex in rows):
        raise ValueError("some examples have 'idx' and some do not: give every example its index or none")
    return batch


def content_index(ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[B] a 32-bit hash of each row's real tokens and their positions: the example index when none is
    given."""
    h = keyed.hash_positions(ids)
    h = h.masked_fill_(~attention_mask.bool(), 0)
    return (h.sum(dim=1) ^ attention_mask.sum(dim=1)) & 0xFFFFFFFF


class _Base:
    """Shared parts: tokenizer facts, keys, epochs, padding."""

    needs_mask_token = True

    def __init__(
        self,
        tokenizer,
        *,
        seed: int = 0,
        epoch: int = 0,
        pad_to_multiple_of: int | None = None,
        mask_token_id: int | None = None,
    ):
        self.tokenizer = tokenizer
        self.seed, self.epoch = int(seed), int(epoch)
        self.pad_to_multiple_of = pad_to_multiple_of
        self.mask_id = mask_token_id if mask_token_id is not None else getattr(tokenizer, "mask_token_id", None)
        if self.needs_mask_token and self.mask_id is None:
            raise ValueError(
                f"tokenizer {type(tokenizer).__name__} has no mask token: add one "
                "(tokenizer.add_special_tokens({'mask_token': '[MASK]'})) or pass mask_token_id"
            )
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = int(pad) if pad is not None else 0
        self.special_ids = sorted(
            set(int(i) for i in getattr(tokenizer, "all_special_ids", []))
            | ({self.mask_id} if self.mask_id is not None else set())
        )
        self.vocab_size = len(tokenizer)
        self.left = getattr(tokenizer, "padding_side", "right") == "left"

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def trainer_callback(self):
        """A ``transformers.TrainerCallback`` that calls :meth:`set_epoch` as each epoch begins, so
        ``Trainer(..., data_collator=c, callbacks=[c.trainer_callback()])`` draws fresh masks every epoch (the
        Trainer never tells a collator the epoch). Not with ``dataloader_persistent_workers=True``: persistent
        workers keep the copy of the collator they started with."""
        from transformers import TrainerCallback

        collator = self

        class SetEpoch(TrainerCallback):
            def on_epoch_begin(self, args, state, control, **kwargs):
                collator.set_epoch(int(state.epoch + 1e-6))  # state.epoch: epochs done, a float

        return SetEpoch()

    def _batch(self, examples) -> tuple[dict, torch.Tensor, torch.Tensor]:
        batch = pad_examples(examples, self.pad_id, pad_to_multiple_of=self.pad_to_multiple_of, left=self.left)
        idx = batch.pop("idx", None)
        if idx is None:
            idx = content_index(batch["input_ids"], batch["attention_mask"])
        keys = keyed.example_keys(self.seed, self.epoch, idx)
        can = batch["attention_mask"].bool()
        stm = batch.pop("special_tokens_mask", None)
        if stm is not None:
            can = can & ~stm.bool()
        return batch, keys, can

    @staticmethod
    def _out(batch: dict, inputs: torch.Tensor, labels: torch.Tensor) -> dict:
        out = {k: batch[k] for k in _PASS if k in batch}
        out["input_ids"], out["labels"] = inputs, labels
        return out


# ---------------------------------------------------------------------------------------------------- MLM


def _common(c: MLMCollator, can) -> dict:
    """The arguments every token strategy takes from the collator."""
    return dict(mask_id=c.mask_id, vocab_size=c.vocab_size, special_ids=c.special_ids, prob=c.prob, mix=c.mix, can=can)


def _random(c: MLMCollator, ids, keys, can, batch) -> Corruption:
    return random_mask(ids, keys, count=c.count, **_common(c, can))


def _whole_word(c: MLMCollator, ids, keys, can, batch) -> Corruption:
    return whole_word_mask(ids, keys, c.word_ids(batch, can), count=c.count, **_common(c, can))


def _span(c: MLMCollator, ids, keys, can, batch) -> Corruption:
    return span_mask(ids, keys, word_ids=c.word_ids(batch, can), count=c.count, **_common(c, can), **c.span_options)


def _ngram(c: MLMCollator, ids, keys, can, batch) -> Corruption:
    return ngram_mask(ids, keys, c.lexicon, pad_id=c.pad_id, **_common(c, can))


STRATEGIES = {"random": _random, "whole_word": _whole_word, "span": _span, "ngram": _ngram}


class MLMCollator(_Base):
    """Masked-LM collator: a drop-in for ``DataCollatorForLanguageModeling(tokenizer, mlm_probability=prob)``.

    strategy: "random" (BERT), "whole_word" (BERT WWM), "span" (SpanBERT; ``span_options`` go to
        :func:`masklab.corrupt.spans.span_mask`), "ngram" (ERNIE-Gram; needs ``lexicon``).
    prob: selection rate (random, whole_word: per token / word; span: exact word budget; ngram: unit rate).
    count: exact number of tokens (random) or words (whole_word, span) per row instead of ``prob``.
    mix: mask / random / keep shares of selected tokens (BERT 80/10/10).
    return_ngram_labels: also return ``ngram_labels`` (strategy "ngram"); HF models do not accept that key.
    """

    def __init__(
        self,
        tokenizer,
        strategy: str = "random",
        prob: float = 0.15,
        seed: int = 0,
        *,
        epoch: int = 0,
        count: int | None = None,
        mix: tuple[float, float, float] = (0.8, 0.1, 0.1),
        lexicon: NgramLexicon | None = None,
        span_options: dict | None = None,
        return_ngram_labels: bool = False,
        pad_to_multiple_of: int | None = None,
        mask_token_id: int | None = None,
    ):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown MLM strategy {strategy!r}; choose from {sorted(STRATEGIES)}")
        self.prob = check_prob("prob", prob)
        super().__init__(
            tokenizer,
            seed=seed,
            epoch=epoch,
            pad_to_multiple_of=pad_to_multiple_of,
            mask_token_id=mask_token_id,
        )
        if strategy == "ngram" and lexicon is None:
            raise ValueError("strategy 'ngram' needs lexicon=masklab.corrupt.ngram.NgramLexicon.build(corpus, ...)")
        if count is not None and strategy == "ngram":
            raise ValueError("strategy 'ngram' takes prob, not count")
        if count is not None and int(count) < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        self.strategy, self.count, self.mix, self.lexicon = strategy, count, tuple(mix), lexicon
        self.span_options = dict(span_options or {})
        self.return_ngram_labels = return_ngram_labels
        self._starts: torch.Tensor | None = None

    def word_ids(self, batch: dict, can: torch.Tensor) -> torch.Tensor:
        """[B, L] word id per token (-1 outside words) from word_ids, offsets, or the vocabulary's word
        marks."""
        if "word_ids" in batch:
            return torch.where(can, batch["word_ids"], -1)
        if "offset_mapping" in batch:
            return word_ids_from_offsets(batch["offset_mapping"], ~can)
        if self._starts is None:
            self._starts = word_start_table(self.tokenizer)
        return word_ids_from_starts(batch["input_ids"], self._starts, can)

    def __call__(self, examples: Sequence[Any]) -> dict:
        batch, keys, can = self._batch(examples)
        c = STRATEGIES[self.strategy](self, batch["input_ids"], keys, can, batch)
        out = self._out(batch, c.inputs, c.targets)
        if self.return_ngram_labels and self.strategy == "ngram":
            out["ngram_labels"] = c.ngram_targets
        return out


_SPACE_MARKS = "\u0120\u010a\u0109\u010d\u2581"  # byte-level space, newline, tab, CR; sentencepiece space


def word_start_table(tokenizer) -> torch.Tensor:
    """[V] bool: vocabulary entries that begin a word.

    WordPiece: every token without the ``##`` continuation prefix. Byte-level BPE / sentencepiece: tokens
    whose first symbol is a space-like marker (so a word is a whitespace-delimited chunk, punctuation
    included).
    """
    vocab = tokenizer.get_vocab()
    size = max(len(tokenizer), max(vocab.values()) + 1)
    table = torch.zeros(size, dtype=torch.bool)
    if any(t.startswith("##") for t in vocab):
        begins = [i for t, i in vocab.items() if not t.startswith("##")]
    elif any(t[:1] in _SPACE_MARKS for t in vocab if t):
        begins = [i for t, i in vocab.items() if t[:1] in _SPACE_MARKS]
    else:
        raise ValueError(
            f"tokenizer {type(tokenizer).__name__} marks no word boundaries ('##' or a space "
            "symbol): give each example 'word_ids' or 'offset_mapping' for word-level masking"
        )
    table[torch.tensor(begins, dtype=torch.long)] = True
    return table


# ---------------------------------------------------------------------------------------------- ELECTRA


class RTDCollator(_Base):
    """ELECTRA / DeBERTaV3 generator input: k = min(max_predictions, max(1, round(prob n))) positions per row
    without replacement; 85% become the mask token and 15% stay (ELECTRA). ``labels`` hold the originals
    there; the discriminator input comes from the generator's samples
    (:func:`masklab.corrupt.replace.sample_replacements`).
    """

    def __init__(
        self,
        tokenizer,
        prob: float = 0.15,
        seed: int = 0,
        *,
        epoch: int = 0,
        max_predictions: int | None = None,
        mix: tuple[float, float, float] = (0.85, 0.0, 0.15),
        pad_to_multiple_of: int | None = None,
        mask_token_id: int | None = None,
    ):
        self.prob = check_prob("prob", prob)
        super().__init__(
            tokenizer,
            seed=seed,
            epoch=epoch,
            pad_to_multiple_of=pad_to_multiple_of,
            mask_token_id=mask_token_id,
        )
        self.max_predictions, self.mix = max_predictions, tuple(mix)

    def __call__(self, examples: Sequence[Any]) -> dict:
        batch, keys, can = self._batch(examples)
        c = electra_mask(
            batch["input_ids"],
            keys,
            mask_id=self.mask_id,
            vocab_size=self.vocab_size,
            special_ids=self.special_ids,
            prob=self.prob,
            max_predictions=self.max_predictions,
            mix=self.mix,
            can=can,
        )
        return self._out(batch, c.inputs, c.targets)


# ------------------------------------------------------------------------------------------------- MEAP


class MEAPCollator(_Base):
    """MEAP causal-LM input: ``round(prob n)`` random real tokens per row become the mask token; ``labels``
    are the clean ids (-100 on padding), which a Hugging Face causal LM shifts into next-token targets."""

    def __init__(
        self,
        tokenizer,
        prob: float = 0.15,
        seed: int = 0,
        *,
        epoch: int = 0,
        pad_to_multiple_of: int | None = None,
        mask_token_id: int | None = None,
    ):
        self.prob = check_prob("prob", prob)
        super().__init__(
            tokenizer,
            seed=seed,
            epoch=epoch,
            pad_to_multiple_of=pad_to_multiple_of,
            mask_token_id=mask_token_id,
        )

    def __call__(self, examples: Sequence[Any]) -> dict:
        batch, keys, can = self._batch(examples)
        ids = batch["input_ids"]
        c = meap_mask(ids, keys, mask_id=self.mask_id, special_ids=self.special_ids, prob=self.prob, attention_mask=can)
        labels = torch.where(batch["attention_mask"].bool(), ids, -100)
        return self._out(batch, c.inputs, labels)


# -------------------------------------------------------------------------------------------------- MDM


class MDMCollator(_Base):
    """Masked-diffusion input (MDLM / LLaDA): each row draws t and masks each token with probability t.

    ``t_sampling``: "iid" (per example key), "antithetic" or "stratified" (coupled within the batch).
    ``return_t``: also return ``t`` [B] (the 1/t ELBO weight needs it; plain HF models do not accept it).
    """

    def __init__(
        self,
        tokenizer,
        seed: int = 0,
        *,
        epoch: int = 0,
        eps: float = 1e-3,
        t_sampling: str = "iid",
        return_t: bool = False,
        pad_to_multiple_of: int | None = None,
        mask_token_id: int | None = None,
    ):
        if t_sampling not in T_SAMPLING:
            raise ValueError(f"unknown t sampling {t_sampling!r}; choose from {T_SAMPLING}")
        super().__init__(
            tokenizer,
            seed=seed,
            epoch=epoch,
            pad_to_multiple_of=pad_to_multiple_of,
            mask_token_id=mask_token_id,
        )
        self.eps, self.t_sampling, self.return_t = eps, t_sampling, return_t

    def __call__(self, examples: Sequence[Any]) -> dict:
        batch, keys, can = self._batch(examples)
        ids = batch["input_ids"]
        B = ids.shape[0]
        bkey = keyed.derive(keys.sum() & 0xFFFFFFFF, 0x5EED)  # one key per batch composition (coupled modes)
        t = sample_t(keys, eps=self.eps, mode=self.t_sampling, position=torch.arange(B), batch_size=B, batch_key=bkey)
        c = mdm_noise(ids, keys, t, mask_id=self.mask_id, special_ids=self.special_ids)
        masked = c.mask & can
        out = self._out(batch, torch.where(masked, self.mask_id, ids), torch.where(masked, ids, -100))
        if self.return_t:
            out["t"] = t
        return out
