"""From ``--data`` and ``tokenizer=`` to tensors of fixed-length token windows, plus facts about the split."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from masklab.data.files import load_corpus
from masklab.data.tokenizers import TokenInfo, build_tokenizer, cache_dir, encode_stream, token_info

__all__ = ["TextData", "text_task_data", "windows", "unigram_entropy_bits"]


@dataclass
class TextData:
    train: torch.Tensor  # [N, L] int64 windows
    valid: torch.Tensor  # [M, L]
    tokenizer: object
    info: TokenInfo
    fingerprint: str
    facts: dict


def windows(stream: np.ndarray, seq_len: int) -> torch.Tensor:
    """Non-overlapping windows [N, seq_len] of a token stream (the tail that does not fill one is dropped)."""
    n = len(stream) // seq_len
    return torch.from_numpy(stream[: n * seq_len].astype(np.int64)).view(n, seq_len)


def unigram_entropy_bits(stream: np.ndarray, vocab_size: int) -> float:
    """Entropy in bits of the empirical token distribution of ``stream``: what a unigram model can reach."""
    counts = np.bincount(stream, minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def text_task_data(data: str, tokenizer, seq_len: int) -> TextData:
    """Windows of ``data`` tokenised by ``tokenizer``: a spec for :func:`build_tokenizer` or a tokenizer object
    (a pretrained model's own)."""
    corpus = load_corpus(data)
    tok = build_tokenizer(tokenizer, corpus.train, corpus.fingerprint) if isinstance(tokenizer, str) else tokenizer
    info = token_info(tok)
    tok_hash = (
        hashlib.sha256(tok.backend_tokenizer.to_str().encode()).hexdigest()[:10]
        if hasattr(tok, "backend_tokenizer")
        else "slow"
    )
    fingerprint = f"{corpus.fingerprint}-tok{tok_hash}"
    streams = {}
    for split in ("train", "valid"):
        cache = cache_dir() / "streams" / f"{fingerprint}-{split}.npy" if corpus.fingerprint.startswith("py") else None
        streams[split] = encode_stream(tok, getattr(corpus, split), cache)
    train, valid = windows(streams["train"], seq_len), windows(streams["valid"], seq_len)
    if len(train) == 0:
        raise ValueError(f"data {data!r} has {len(streams['train'])} training tokens, fewer than seq_len={seq_len}")
    if len(valid) == 0:  # very small corpora: validate on the last training window
        valid = train[-1:]
    facts = {
        "corpus": corpus.name,
        "corpus_fingerprint": corpus.fingerprint,
        "train_tokens": int(len(streams["train"])),
        "valid_tokens": int(len(streams["valid"])),
        "vocab_size": info.vocab_size,
        "valid_unigram_entropy_bits": unigram_entropy_bits(streams["valid"], info.vocab_size)
        if len(streams["valid"])
        else math.nan,
    }
    return TextData(train, valid, tok, info, fingerprint, facts)
