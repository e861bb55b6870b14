"""A synthetic key-value retrieval corpus with exact answers and a controlled needle position (MEAP's
key-information retrieval, Zhuang et al. 2025, Sec. 4.2, in miniature).

A document lists :data:`PAIRS` random ``key:value`` pairs (a key is one distinct letter, a value two letters or
digits), then :data:`QUERIES` queries ``?key:``, each answered by its value::

    ......r:0f k:x1 ... m:k2 ?k:x1 ?r:0f ... ?m:k2

Each document is exactly 127 characters, so with the byte tokenizer and its EOS it fills one 128-token training
window (``seq_len=128``). The answers are a fifth of the characters, so retrieval is worth learning (with one
query per document the loss barely rewards it, and a 4-layer model trained for 600 steps did not learn it);
one-letter keys make it one induction step. The keys of the queries are drawn uniformly; :func:`kv_examples`
fixes the pair that the *last* query asks for (the needle), for a probe of accuracy by needle position.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PAIRS", "QUERIES", "VALUE_CHARS", "DOC_CHARS", "kv_document", "kv_examples", "kv_corpus"]

PAIRS = 10
QUERIES = 12
VALUE_CHARS = 2
DOC_CHARS = 127  # + EOS = one 128-token window of the byte tokenizer
LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))
ALPHABET = np.array(list("abcdefghijklmnopqrstuvwxyz0123456789"))


def kv_document(rng: np.random.Generator, needle: int | None = None) -> tuple[str, int]:
    """(document, needle index): a fresh document whose last query asks for pair ``needle`` (random if None)."""
    keys = rng.choice(LETTERS, PAIRS, replace=False).tolist()
    values = ["".join(v) for v in rng.choice(ALPHABET, (PAIRS, VALUE_CHARS))]
    asked = rng.integers(PAIRS, size=QUERIES)
    if needle is not None:
        asked[-1] = needle
    body = " ".join(f"{k}:{v}" for k, v in zip(keys, values, strict=True))
    body += "".join(f" ?{keys[q]}:{values[q]}" for q in asked)
    return "." * (DOC_CHARS - len(body)) + body, int(asked[-1])


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
    return Corpus("kv-retrieval", docs["train"], docs["valid"], f"kv-retrieval-v3-seed{seed}-{train}-{valid}")
