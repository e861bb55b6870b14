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

Keyed determinism: an example's mask is a function of (seed, epoch, example index) only
(:func:`masklab.corrupt.keyed.train_keys`, the key the training loop uses too), when the example has an
``"idx"`` field. Without one the key is a hash of its token ids, its position in the batch and the collator's
call count, so identical copies in one batch get different masks (as in Hugging Face) and a fresh collator fed
the same batches in the same order repeats the same masks. Call :meth:`set_epoch` at each epoch for fresh masks; in
``transformers.Trainer`` pass ``callbacks=[collator.trainer_callback()]``, which does that. The Trainer's default
``remove_unused_columns=True`` drops ``idx``, ``word_ids`` and ``special_tokens_mask`` (the model's ``forward``
does not name them), so the collator falls back to the content keys and the vocabulary's word marks (with a
one-time warning); set ``remove_unused_columns=False`` to key on ``idx`` and use ``word_ids`` (extra columns,
strings too, are ignored). Without ``idx`` each DataLoader worker counts its own calls.

Word boundaries (whole_word, span): the example's ``"word_ids"`` (None or -1 outside words) if present, else
its ``"offset_mapping"`` with Hugging Face's rule, else the tokenizer's continuation prefix (WordPiece
``##``).

Bad input raises ValueError: prob outside [0, 1], a tokenizer without mask token, an empty batch or example. A
row that holds only special tokens is a documented no-op (no position selected, labels all -100).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any

import numpy as np
import torch

from masklab.corrupt import keyed
from masklab.corrupt.diffusion import T_SAMPLING, sample_t
from masklab.corrupt.ngram import NgramLexicon
from masklab.corrupt.strategies import MLM_STRATEGIES, TOKEN, WORD_LEVEL
from masklab.corrupt.tokens import check_prob, word_ids_from_offsets, word_ids_from_starts
from masklab.data.tokenizers import TokenInfo, word_start_table

__all__ = ["MLMCollator", "RTDCollator", "MEAPCollator", "MDMCollator", "pad_examples", "word_start_table"]

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
        self.info = TokenInfo.from_tokenizer(tokenizer, mask_token_id)
        self.mask_id, self.pad_id, self.vocab_size = self.info.mask_id, self.info.pad_id, self.info.vocab_size
        self.special_ids = list(self.info.special_ids)
        self.left = getattr(tokenizer, "padding_side", "right") == "left"
        self.step = 0  # calls so far: keys batches without "idx" (with the position in the batch)

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
        if idx is None:  # content, position in the batch and call count: copies differ, runs repeat
            idx = content_index(batch["input_ids"], batch["attention_mask"])
            keys = keyed.derive(keyed.train_keys(self.seed, self.epoch, idx), self.step, torch.arange(len(idx)))
        else:
            keys = keyed.train_keys(self.seed, self.epoch, idx)
        self.step += 1
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
        if strategy not in MLM_STRATEGIES:
            raise ValueError(f"unknown MLM strategy {strategy!r}; choose from {list(MLM_STRATEGIES)}")
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
        self._warned = False

    def options(self, batch: dict, can: torch.Tensor) -> dict:
        """The strategy's options: rate, mix, and per strategy count, words, span options or lexicon."""
        opts: dict = {"prob": self.prob, "mix": self.mix}
        if self.strategy == "ngram":
            return {**opts, "lexicon": self.lexicon}
        opts["count"] = self.count
        if self.strategy in WORD_LEVEL:
            opts["word_ids"] = self.word_ids(batch, can)
        if self.strategy == "span":
            opts.update(self.span_options)
        return opts

    def word_ids(self, batch: dict, can: torch.Tensor) -> torch.Tensor:
        """[B, L] word id per token (-1 outside words) from word_ids, offsets, or the vocabulary's word
        marks."""
        if "word_ids" in batch:
            return torch.where(can, batch["word_ids"], -1)
        if "offset_mapping" in batch:
            return word_ids_from_offsets(batch["offset_mapping"], ~can)
        if self.info.word_starts is None:
            raise ValueError(
                f"tokenizer {type(self.tokenizer).__name__} marks no word boundaries ('##' or a space "
                "symbol): give each example 'word_ids' or 'offset_mapping' for word-level masking"
            )
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"strategy {self.strategy!r}: the batch has no 'word_ids' or 'offset_mapping', so words come from "
                "the vocabulary's word marks ('##' / space symbols), so 'hello,' is two words where Hugging "
                "Face's offset rule makes one. Keep offsets with tokenizer(..., return_offsets_mapping=True) and, in "
                "transformers.Trainer, TrainingArguments(remove_unused_columns=False)",
                UserWarning,
                stacklevel=3,
            )
        return word_ids_from_starts(batch["input_ids"], self.info.word_starts, can)

    def __call__(self, examples: Sequence[Any]) -> dict:
        batch, keys, can = self._batch(examples)
        c = TOKEN.get(self.strategy)(batch["input_ids"], keys, self.info, can, **self.options(batch, can))
        out = self._out(batch, c.inputs, c.targets)
        if self.return_ngram_labels and self.strategy == "ngram":
            out["ngram_labels"] = c.ngram_targets
        return out


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
        opts = {"prob": self.prob, "max_predictions": self.max_predictions, "mix": self.mix}
        c = TOKEN.get("electra")(batch["input_ids"], keys, self.info, can, **opts)
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
        c = TOKEN.get("meap")(ids, keys, self.info, can, prob=self.prob)
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
        t = sample_t(
            keys,
            eps=self.eps,
            mode=self.t_sampling,
            position=torch.arange(B),
            batch_size=B,
            batch_key=keyed.batch_key(keys),  # one key per batch composition (coupled modes)
        )
        c = TOKEN.get("mdm")(ids, keys, self.info, can, t=t)
        out = self._out(batch, c.inputs, c.targets)
        if self.return_t:
            out["t"] = t
        return out
