"""A synthetic key-value retrieval corpus with exact answers and a controlled needle position (MEAP's
key-information retrieval, Zhuang et al. 2025, Sec. 4.2, in miniature).

A document lists :data:`PAIRS` random ``key:value`` pairs (a key is one distinct letter, a value two letters or
digits), then a query ``?key:`` for one of them, answered by its value::

    .......r:0f k:x1 ... m:k2 ?k:x1

One-letter keys make retrieval one induction step (find the key, copy what follows), which a 4-layer model
learns in minutes on a CPU; the needle is any of the 20 pairs.

Each document is exactly 127 characters, so with the byte tokenizer and its EOS it fills one 128-token training
window (``seq_len=128``). The queried pair (the needle) is drawn uniformly; :func:`kv_examples` fixes it, for a
probe of accuracy by needle position.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PAIRS", "VALUE_CHARS", "DOC_CHARS", "kv_document", "kv_examples", "kv_corpus"]

PAIRS = 20
VALUE_CHARS = 2
DOC_CHARS = 127  # + EOS = one 128-token window of the byte tokenizer
LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))
ALPHABET = np.array(list("abcdefghijklmnopqrstuvwxyz0123456789"))


def kv_document(rng: np.random.Generator, needle: int | None = None) -> tuple[str, int]:
    """(document, needle index): a fresh document whose query asks for pair ``needle`` (random if None)."""
    keys = rng.choice(LETTERS, PAIRS, replace=False).tolist()
    values = ["".join(v) for v in rng.choice(ALPHABET, (PAIRS, VALUE_CHARS))]
    needle = int(rng.integers(PAIRS)) if needle is None else needle
    body = " ".join(f"{k}:{v}" for k, v in zip(keys, values, strict=True)) + f" ?{keys[needle]}:{values[needle]}"
    return "." * (DOC_CHARS - len(body)) + body, needle


def kv_examples(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """``n`` documents with needles cycling over every position, from ``seed`` (disjoint from the corpus's)."""
    rng = np.random.default_rng([7, seed])
    docs = [kv_document(rng, i % PAIRS) for i in range(n)]
    return [d for d, _ in docs], np.array([i for _, i in docs])


def kv_corpus(train: int = 20000, valid: int = 500, seed: int = 0):
    """The ``kv-retrieval`` corpus (:class:`masklab.data.stdlib.Corpus`): random needles, train and valid drawn
    from separate streams of ``seed``."""
    from masklab.data.stdlib import Corpus

    docs = {}
    for split, n in (("train", train), ("valid", valid)):
        rng = np.random.default_rng([seed, 0 if split == "train" else 1])
        docs[split] = [kv_document(rng)[0] for _ in range(n)]
    return Corpus("kv-retrieval", docs["train"], docs["valid"], f"kv-retrieval-v2-seed{seed}-{train}-{valid}")
