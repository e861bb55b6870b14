"""Tokenizers: byte-level (vocab 261), byte-level BPE trained on the corpus, or any Hugging Face tokenizer.

Trained tokenizers are cached by the corpus fingerprint, so a second run on the same corpus reuses them. The
tokenizer is saved with every checkpoint, so ``AutoTokenizer.from_pretrained(checkpoint)`` gives it back.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

__all__ = [
    "SPECIALS",
    "TokenInfo",
    "cache_dir",
    "byte_tokenizer",
    "train_bpe",
    "build_tokenizer",
    "token_info",
    "word_start_table",
    "encode_stream",
]

SPECIALS = {
    "pad_token": "<pad>",
    "mask_token": "<mask>",
    "bos_token": "<bos>",
    "eos_token": "<eos>",
    "unk_token": "<unk>",
}


def cache_dir() -> Path:
    """``$MASKLAB_CACHE`` or ``~/.cache/masklab``."""
    return Path(os.environ.get("MASKLAB_CACHE") or Path.home() / ".cache" / "masklab")


def _wrap(tok: Tokenizer, max_len: int = 1 << 20) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=max_len, **SPECIALS)


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """Raw bytes: 5 special tokens + the 256 byte-level symbols, no merges (vocab 261)."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {s: i for i, s in enumerate(list(SPECIALS.values()) + alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=SPECIALS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return _wrap(tok)


def train_bpe(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained with HF ``tokenizers`` on ``texts``; specials get ids 0-4."""
    if vocab_size <= 261:
        raise ValueError(f"BPE vocab must exceed the 261 byte symbols and specials, got {vocab_size}")
    tok = Tokenizer(models.BPE(unk_token=SPECIALS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIALS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return _wrap(tok)


def build_tokenizer(
    spec: str, texts: list[str] | None = None, fingerprint: str | None = None
) -> PreTrainedTokenizerBase:
    """``bytes``, ``bpe:N`` (trained on ``texts``, cached by ``fingerprint``) or a path to an HF tokenizer."""
    if spec == "bytes":
        return byte_tokenizer()
    if m := re.fullmatch(r"bpe:(\d+)", spec):
        vocab = int(m.group(1))
        path = cache_dir() / "tokenizers" / f"{fingerprint}-bpe{vocab}" if fingerprint else None
        if path is not None and (path / "tokenizer.json").exists():
            return AutoTokenizer.from_pretrained(path)
        if not texts:
            raise ValueError("training a BPE tokenizer needs training text")
        tok = train_bpe(texts, vocab)
        if path is not None:
            tmp = path.with_name(path.name + f".tmp{os.getpid()}")
            tok.save_pretrained(tmp)
            try:
                os.replace(tmp, path)
            except OSError:  # another process cached it first
                pass
        return tok
    path = Path(spec).expanduser()
    if not path.exists():
        raise ValueError(f"tokenizer must be 'bytes', 'bpe:N' or a path to a Hugging Face tokenizer, got {spec!r}")
    tok = AutoTokenizer.from_pretrained(path)
    if tok.mask_token_id is None:
        raise ValueError(f"tokenizer at {path} has no mask token; masked objectives need one")
    return tok


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


@dataclass(frozen=True)
class TokenInfo:
    """The token facts every collator, objective and picture uses, read once from the tokenizer
    (:meth:`from_tokenizer`).

    ``special_ids``: never selected by MLM-style corruptions and never drawn as random replacements.
    ``never_mask``: never noised by masked diffusion and MEAP: every special token except the tokenizer's own
    EOS (a diffusion model predicts where a text ends), and always pad, mask and BOS/CLS.
    ``word_starts``: the one [V] word-start table (:func:`word_start_table`), None when the vocabulary marks no
    word boundaries.
    """

    vocab_size: int
    mask_id: int
    pad_id: int
    eos_id: int
    bos_id: int | None
    special_ids: tuple[int, ...]
    never_mask: tuple[int, ...]
    word_starts: torch.Tensor | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_tokenizer(cls, tok: PreTrainedTokenizerBase, mask_token_id: int | None = None) -> TokenInfo:
        """The facts of ``tok``. Pad falls back to EOS (then SEP); a missing mask token is a ValueError."""
        mask = mask_token_id if mask_token_id is not None else getattr(tok, "mask_token_id", None)
        if mask is None:
            raise ValueError(
                f"tokenizer {type(tok).__name__} has no mask token: add one "
                "(tokenizer.add_special_tokens({'mask_token': '[MASK]'})) or pass mask_token_id"
            )
        mask = int(mask)
        eos = tok.eos_token_id if tok.eos_token_id is not None else getattr(tok, "sep_token_id", None)
        pad = tok.pad_token_id if tok.pad_token_id is not None else eos
        bos = tok.bos_token_id if tok.bos_token_id is not None else getattr(tok, "cls_token_id", None)
        if pad is None or eos is None:
            raise ValueError(f"tokenizer {type(tok).__name__} needs a pad or eos token")
        special = sorted({int(i) for i in getattr(tok, "all_special_ids", [])} | {mask})
        keep = {int(i) for i in (pad, mask, bos) if i is not None}
        never = sorted({i for i in special if i != tok.eos_token_id} | keep)
        try:
            starts = word_start_table(tok)
        except (ValueError, AttributeError, TypeError):
            starts = None
        return cls(len(tok), mask, int(pad), int(eos), bos, tuple(special), tuple(never), starts)


def token_info(tok: PreTrainedTokenizerBase, mask_token_id: int | None = None) -> TokenInfo:
    """:meth:`TokenInfo.from_tokenizer`."""
    return TokenInfo.from_tokenizer(tok, mask_token_id)


def encode_stream(tok: PreTrainedTokenizerBase, texts: list[str], cache: Path | None = None) -> np.ndarray:
    """All documents as one int32 stream, each followed by EOS; cached as .npy when ``cache`` is given. Documents
    longer than the model's window are fine here (the stream is cut into windows), hence no length warning."""
    if cache is not None and cache.exists():
        return np.load(cache)
    eos = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
    pieces = []
    for start in range(0, len(texts), 256):
        enc = tok(texts[start : start + 256], add_special_tokens=False, verbose=False)["input_ids"]
        for ids in enc:
            pieces.append(np.asarray(ids + [eos], dtype=np.int32))
    stream = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + f".tmp{os.getpid()}.npy")
        np.save(tmp, stream)
        os.replace(tmp, cache)
    return stream
