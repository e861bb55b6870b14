"""A synthetic key-value retrieval corpus with exact answers and a controlled needle position (MEAP's
key-information retrieval, Zhuang et al. 2025, Sec. 4.2, in miniature).

A document lists :data:`PAIRS` random ``key:value`` pairs (three characters each, keys distinct), then a query
``?key:`` for one of them, answered by its value::

    ......r4k:0fz 9ab:x1q ... mm3:k2p ?9ab:x1q

Each document is exactly 127 characters, so with the byte tokenizer and its EOS it fills one 128-token training
window (``seq_len=128``). The queried pair (the needle) is drawn uniformly; :func:`kv_examples` fixes it, for a
probe of accuracy by needle position.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PAIRS", "DOC_CHARS", "kv_document", "kv_examples", "kv_corpus"]

PAIRS = 14
DOC_CHARS = 127  # + EOS = one 128-token window of the byte tokenizer
ALPHABET = np.array(list("abcdefghijklmnopqrstuvwxyz0123456789"))


def kv_document(rng: np.random.Generator, needle: int | None = None) -> tuple[str, int]:
    """(document, needle index): a fresh document whose query asks for pair ``needle`` (random if None)."""
    while True:
        keys = ["".join(k) for k in rng.choice(ALPHABET, (PAIRS, 3))]
        if len(set(keys)) == PAIRS:
            break
    values = ["".join(v) for v in rng.choice(ALPHABET, (PAIRS, 3))]
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
    return Corpus("kv-retrieval", docs["train"], docs["valid"], f"kv-retrieval-v1-seed{seed}-{train}-{valid}")
