"""MaskSearch's RAMP task in miniature (:mod:`masklab.data.ramp`, :mod:`masklab.objectives.masksearch`). Launch:
``masklab train --recipe masksearch-mini --out runs/ramp retrieval=bm25`` (or ``retrieval=none``).

A fresh ModernBERT reader (BPE-4096 trained on the stdlib's train files) learns to fill 1..``max_spans`` masked
identifiers, numbers and names of stdlib docstrings, with the top BM25 window(s) of stdlib code before the
docstring (``retrieval=bm25``), the same but never from the docstring's own file (``bm25-other-files``), or no
passage (``none``). Every arm has the same rows of ``seq_len`` tokens, the same model and the same steps, so the
compute is equal. Train docstrings come from the train files, held-out ones from the valid files
(:func:`masklab.data.stdlib.split_of`, ``valid_percent``); ``masklab eval`` reports span and example exact match,
``benchmarks/masksearch.py`` splits them by the number of masked spans.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch

from masklab.models import build_model, check_seq_len
from masklab.train.recipes.base import Recipe, Task, register, seeded


@dataclass
class MaskSearchRecipe(Recipe):
    retrieval: str = "bm25"  # none | bm25 | bm25-other-files (the docstring's own file never retrieved)
    passages: int = 1  # BM25 windows per example, best first, cut to the room the docstring leaves
    max_spans: int = 4  # examples have 1..max_spans masked spans, equally many of each
    max_chars: int = 160  # each docstring's first characters, cut at a space
    train_per_k: int = 1000  # train examples per number of spans; a docstring may repeat with other spans masked
    valid_per_k: int = 100  # held-out examples per number of spans, each docstring at most once per k
    valid_percent: int = 20  # held-out files by path hash: a superset of the corpus's 5% valid files (k=4 needs it)
    tokenizer: str = "bpe:4096"  # bpe:N trained on `data`'s train split (an identifier is 1-4 tokens), or bytes
    slot: int = 4  # mask tokens per span: a span whose tokens do not fit is never masked (bytes: use 12)
    seq_len: int = 160  # tokens per row: the masked docstring (<= ~60 BPE tokens), the rest is passage
    preset: str = "micro"  # 2 layers x 32 wide: a fraction of a second a step on a busy 2-core CPU
    batch_size: int = 32
    steps: int = 200  # ~1-2.5 CPU minutes; the held-out slot loss is still falling there (docs/methods_pretraining.md)
    lr: float = 3e-3
    warmup: int = 30
    eval_every: int = 100
    ckpt_every: int = 0
    eval_batches: int = 7  # 7 x 64 rows: the whole held-out split (400 rows at valid_per_k=100)

    def __post_init__(self):
        from masklab.data.ramp import RETRIEVALS

        super().__post_init__()
        if self.arch != "modernbert":
            raise ValueError(f"arch must be modernbert: the reader fills slots with a masked LM, got {self.arch!r}")
        if self.retrieval not in RETRIEVALS:
            raise ValueError(f"retrieval must be one of {', '.join(RETRIEVALS)}, got {self.retrieval!r}")
        for k in ("passages", "max_spans", "train_per_k", "valid_per_k", "slot"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.max_chars < 20:
            raise ValueError(f"max_chars must be >= 20, got {self.max_chars}")
        if not 1 <= self.valid_percent <= 50:
            raise ValueError(f"valid_percent must be in [1, 50], got {self.valid_percent}")
        check_seq_len(self.seq_len)  # a masked docstring too long for it is a ValueError when the rows are built

    def build_tokenizer(self):
        """The reader's tokenizer: bytes, or a BPE trained on (and cached by) the ``data`` corpus's train split."""
        from masklab.data.files import load_corpus
        from masklab.data.tokenizers import build_tokenizer

        if self.tokenizer == "bytes":
            return build_tokenizer("bytes")
        corpus = load_corpus(self.data)
        return build_tokenizer(self.tokenizer, corpus.train, corpus.fingerprint)

    def examples(self, tok, split: str):
        """The RAMP examples of ``split`` ('train' or 'valid'); only spans whose tokens fit a slot are masked."""
        from masklab.data.ramp import ramp_examples

        def fits(span: str) -> bool:
            return len(tok(span, add_special_tokens=False)["input_ids"]) <= self.slot

        train = split == "train"
        return ramp_examples(split, self.train_per_k if train else self.valid_per_k, self.max_spans, self.max_chars,
                             fits=fits, valid_percent=self.valid_percent, repeat=train)  # fmt: skip

    def rows(self, tok, split: str, retrieval: str | None = None) -> torch.Tensor:
        """[N, 2, seq_len] reader rows of :meth:`examples` with ``retrieval`` (default: the recipe's)."""
        from masklab.data.ramp import encode_reader, retrieve

        examples = self.examples(tok, split)
        found = retrieve(examples, retrieval or self.retrieval, self.passages)
        return encode_reader(tok, examples, found, self.seq_len, self.slot)

    def build(self) -> Task:
        from masklab.data.tokenizers import token_info
        from masklab.objectives.masksearch import RAMPReader

        tok = self.build_tokenizer()
        info = token_info(tok)
        with seeded(self.seed):
            model = build_model(self.arch, self.preset, info, self.seq_len)
        train, valid = self.rows(tok, "train"), self.rows(tok, "valid")
        version = ".".join(map(str, sys.version_info[:3]))
        facts = dict(retrieval=self.retrieval, train_examples=len(train), test_examples=len(valid),
                     example_tokens=self.seq_len)  # fmt: skip
        objective = RAMPReader(model, info.pad_id, self.slot, self.max_spans)
        fingerprint = (
            f"py{version}-ramp-{self.tokenizer}-{self.retrieval}-{self.passages}-{self.max_chars}-{self.valid_percent}"
        )
        return Task(objective, train, valid, fingerprint, tok, facts)


@register(
    "masksearch-mini", "MaskSearch RAMP: fill masked docstring spans with or without BM25 passages of stdlib code"
)
def masksearch_mini():
    return MaskSearchRecipe()
