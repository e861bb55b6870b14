"""RAMP data in miniature: masked stdlib docstrings, a BM25 search tool over stdlib code, and reader inputs.

MaskSearch (Wu et al. 2025, "MaskSearch: A Universal Pre-Training Framework to Enhance Agentic Search
Capability") pre-trains on Retrieval Augmented Mask Prediction (RAMP): salient spans of a Wikipedia passage (named
entities, dates, numbers, ontology terms) are replaced by ``[mask]`` and the model searches to fill them; its
curriculum orders examples by the number of masked spans. Here the passage is a stdlib docstring (its first
``max_chars``), the salient spans are what a programmer would look up, and the search engine is BM25 over stdlib
source:

- :func:`candidate_spans`: the spans that may be masked, each a whole token of one kind of :data:`KINDS`:
  ``identifier`` (a word with ``_``, a dot, an inner capital, or a following ``(``: ``os.path``, ``getLogger``,
  ``close(``), ``number`` (``42``, ``3.5``), ``name`` (a builtin, a stdlib module or class name, case as
  defined: ``Decimal``, ``socket``, ``len``; or an acronym: ``HTTP``); at most :data:`SPAN_CHARS` characters,
  ASCII.
  Python keywords (``None``, ``True``) are never masked.
- :func:`mask_spans`: ``k`` of them replaced by :data:`MASK`, drawn uniformly (the reference generator weights an
  entity by its length in words and a number by the largest weight: all equal for one-word spans); the answers are
  the spans, in text order. As in the reference, a span that the docstring repeats is never masked.
- :func:`code_chunks` and :class:`BM25Tool`: the retrieval corpus (every stdlib file, train and valid, cut into
  windows of lines with *every docstring removed*, so a passage never holds the masked sentence itself) and a BM25
  search over it with the ``bm25s`` library (Lucene's BM25 scoring, k1=1.5, b=0.75).
- :func:`ramp_examples`: balanced examples with 1..``max_spans`` masked spans from one split's files
  (:func:`masklab.data.stdlib.split_of`), the selection fixed by ``numpy.random.default_rng([seed, k])``.
- :func:`retrieve`: each example's passage: nothing (``none``), the top BM25 windows (``bm25``), or the top windows
  of other files than the docstring's own (``bm25-other-files``, a leakage check).
- :func:`encode_reader`: one reader row ``[bos] passage [eos] masked docstring [pad]*`` with labels; each
  :data:`MASK` becomes ``slot`` mask tokens whose targets are the span's tokens then ``eos`` filler, so the slot
  does not reveal the span's length (as the paper's single ``[mask]`` does not).
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import json
import keyword
import os
import re
import sys
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

__all__ = [
    "KINDS",
    "MASK",
    "SPAN_CHARS",
    "RampExample",
    "candidate_spans",
    "mask_spans",
    "stdlib_names",
    "code_chunks",
    "BM25Tool",
    "doc_head",
    "ramp_examples",
    "search_query",
    "encode_reader",
    "RETRIEVALS",
    "stdlib_tool",
    "retrieve",
]

KINDS = ("identifier", "number", "name")
MASK = "[mask]"  # the paper's mask marker in the text; the reader sees a slot of mask tokens in its place
CHUNK_LINES = 8  # lines of code per retrievable window (~300 characters once whitespace is collapsed)
SPAN_CHARS = 12  # the longest maskable span, in characters

_WORD = re.compile(r"(?<![\w.])[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(?!\w)", re.ASCII)
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?!\w|\.\d)", re.ASCII)
_CAMEL = re.compile(r"[a-z][A-Z]")


@dataclass(frozen=True)
class RampExample:
    """One RAMP example: the docstring head, its masked form, the answers (text order) and their kinds."""

    text: str
    masked: str
    answers: tuple[str, ...]
    kinds: tuple[str, ...]
    file: str  # the stdlib file the docstring comes from (relative path)


def candidate_spans(text: str, names: frozenset[str] = frozenset()) -> list[tuple[int, int, str]]:
    """Sorted, non-overlapping ``(start, end, kind)`` of the maskable spans of ``text`` (see the module docstring).
    ``names`` are the words of kind ``name`` (:func:`stdlib_names`)."""
    out = []
    for m in _WORD.finditer(text):
        w, b = m.group(), m.end()
        if keyword.iskeyword(w) or len(w) > SPAN_CHARS:
            continue
        if "_" in w or "." in w or _CAMEL.search(w) or text[b : b + 1] == "(":
            out.append((m.start(), b, "identifier"))
        elif w in names or (w.isupper() and len(w) >= 2):  # a defined name, or an acronym (HTTP, EOF)
            out.append((m.start(), b, "name"))
    out += [(m.start(), m.end(), "number") for m in _NUMBER.finditer(text) if len(m.group()) <= SPAN_CHARS]
    return sorted(out)


def mask_spans(text: str, spans, k: int, rng: np.random.Generator) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """(masked text, answers, kinds): ``k`` of ``spans`` (from :func:`candidate_spans`), drawn without replacement
    by ``rng``, each replaced by :data:`MASK`; answers and kinds in text order."""
    if not 1 <= k <= len(spans):
        raise ValueError(f"k must be in [1, {len(spans)}] (the candidate spans), got {k}")
    chosen = [spans[i] for i in sorted(rng.choice(len(spans), k, replace=False))]
    pieces, at = [], 0
    for a, b, _ in chosen:
        pieces += [text[at:a], MASK]
        at = b
    pieces.append(text[at:])
    return "".join(pieces), tuple(text[a:b] for a, b, _ in chosen), tuple(kd for _, _, kd in chosen)


def _parse(text: str):
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError):
        return None


def _chunks(lines: list[str]) -> list[str]:
    """Windows of :data:`CHUNK_LINES` lines, whitespace runs collapsed to one space; windows under 40 characters
    dropped."""
    out = (" ".join(" ".join(lines[i : i + CHUNK_LINES]).split()) for i in range(0, len(lines), CHUNK_LINES))
    return [c for c in out if len(c) >= 40]


def _facts_of(rel: str, text: str) -> dict:
    """What RAMP reads off one source file, from one parse and one walk: its docstrings (module, class and function,
    in the order of :func:`masklab.data.stdlib.docstrings`), the class names it defines, and the :func:`_chunks` of
    its lines without the lines of any docstring."""
    tree = _parse(text)
    lines = text.splitlines()
    if tree is None:
        return {"rel": rel, "docs": [], "classes": [], "chunks": _chunks(lines)}
    drop, classes, docs = set(), [], []
    for node in ast.walk(tree):  # the module first, then breadth first
        if isinstance(node, ast.ClassDef):
            classes.append(node.name)
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        doc = ast.get_docstring(node, clean=True)
        if doc is not None:
            first = node.body[0]
            drop.update(range(first.lineno - 1, first.end_lineno))
            if doc.strip():
                docs.append(doc)
    code = [line for i, line in enumerate(lines) if i not in drop]
    return {"rel": rel, "docs": docs, "classes": classes, "chunks": _chunks(code)}


def _cached_json(name: str, make):
    """``make()``'s JSON value, kept in :func:`masklab.data.tokenizers.cache_dir` under ``name``."""
    from masklab.data.tokenizers import cache_dir

    path = cache_dir() / name
    if path.exists():
        return json.loads(path.read_text())
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value))
    tmp.replace(path)  # atomic: concurrent builders write the same content
    return value


@lru_cache(maxsize=2)
def _stdlib_key(root: str | None) -> str:
    """Names the stdlib's files: a hash of the Python version and each file's path, size and mtime (a stat, not a
    read: the RAMP caches are looked up on every build)."""
    from masklab.data.stdlib import stdlib_files

    digest = hashlib.sha256(f"ramp-v2 {sys.version} {CHUNK_LINES}".encode())
    for rel, path in stdlib_files(root):
        st = path.stat()
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:16]


@lru_cache(maxsize=2)
def _stdlib_facts(root: str | None) -> tuple[dict, ...]:
    """:func:`_facts_of` every readable stdlib file (train and valid), cached on disk by :func:`_stdlib_key`
    (parsing the whole stdlib takes ~20 s on one core)."""
    from masklab.data.stdlib import stdlib_files

    def make():
        out = []
        for rel, path in stdlib_files(root):
            try:
                out.append(_facts_of(rel, path.read_text(encoding="utf-8")))
            except (UnicodeDecodeError, OSError):
                continue
        return out

    return tuple(_cached_json(f"ramp-stdlib-{_stdlib_key(root)}.json", make))


@lru_cache(maxsize=2)
def stdlib_names(root: str | None = None) -> frozenset[str]:
    """The words of kind ``name``: the builtins, the stdlib's top-level module and package names and the class
    names it defines that start with a capital (3+ characters, case as defined, keywords left out). Function names
    are left out: too many are plain English words (``which``, ``load``)."""
    names = {n for n in dir(builtins) if not n.startswith("_")}
    for f in _stdlib_facts(root):
        names.add(f["rel"].split("/")[0].removesuffix(".py"))
        names.update(n for n in f["classes"] if n[:1].isupper())
    return frozenset(n for n in names if len(n) >= 3 and not keyword.iskeyword(n) and n.isidentifier())


@lru_cache(maxsize=2)
def code_chunks(root: str | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(passages, files): every stdlib file without its docstrings, cut into windows of :data:`CHUNK_LINES` lines
    with runs of whitespace collapsed to one space (a reader's passage budget is short)."""
    pairs = [(c, f["rel"]) for f in _stdlib_facts(root) for c in f["chunks"]]
    return tuple(c for c, _ in pairs), tuple(r for _, r in pairs)


class BM25Tool:
    """The search tool: BM25 (``bm25s``) over ``passages``; ``files[i]`` names the file of passage ``i``."""

    def __init__(self, passages, files=None):
        import bm25s

        if not passages:
            raise ValueError("passages must be a non-empty list of strings")
        self.passages = list(passages)
        self.files = list(files) if files is not None else [""] * len(self.passages)
        if len(self.files) != len(self.passages):
            raise ValueError(f"files has {len(self.files)} entries for {len(self.passages)} passages")
        self._bm25s = bm25s
        self.index = bm25s.BM25()  # k1=1.5, b=0.75, Lucene's idf
        self.index.index(self._tokens(self.passages), show_progress=False)

    def _tokens(self, texts):
        return self._bm25s.tokenize(list(texts), stopwords="en", show_progress=False)

    def search(self, queries, k: int = 1, exclude=None) -> list[list[int]]:
        """The indices of the top ``k`` passages for each query, best first; ``exclude[i]`` (a file name or None)
        drops that file's passages from query ``i``'s results."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        queries = list(queries)
        exclude = [None] * len(queries) if exclude is None else list(exclude)
        # Over-fetch when excluding: a file's own windows can fill the top of the list.
        fetch = min(len(self.passages), k + (64 if any(exclude) else 0))
        found, _ = self.index.retrieve(self._tokens(queries), k=fetch, show_progress=False, n_threads=1)
        return [
            [int(i) for i in row if self.files[i] != ex or ex is None][:k]
            for row, ex in zip(found, exclude, strict=True)
        ]


def doc_head(doc: str, max_chars: int) -> str:
    """A docstring with its whitespace collapsed, cut at a space to at most ``max_chars``."""
    text = " ".join(doc.split())
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars + 1].rsplit(" ", 1)[0]
    return cut if cut else text[:max_chars]


def _once(text: str, span: str) -> bool:
    """Whether ``span`` occurs once in ``text`` as a whole token: the reference generator (MaskSearch
    ``src/RAMP/gen_qa.py``, as documented at opendeep.wiki/Alibaba-NLP/MaskSearch) drops an entity that the passage
    repeats, since the repeat gives it away."""
    return len(re.findall(rf"(?<![\w.]){re.escape(span)}(?!\w)", text)) == 1


@lru_cache(maxsize=8)
def _pool(split: str, max_chars: int, root: str | None, valid_percent: int) -> tuple[tuple[str, str, tuple], ...]:
    """(file, docstring head, candidate spans) of the ``split`` files' ASCII docstrings with a candidate span."""
    from masklab.data.stdlib import split_of

    names = stdlib_names(root)
    out = {}
    for f in _stdlib_facts(root):
        if split_of(f["rel"], valid_percent) != split:
            continue
        for doc in f["docs"]:
            head = doc_head(doc, max_chars)
            spans = [sp for sp in candidate_spans(head, names) if head.isascii() and _once(head, head[sp[0] : sp[1]])]
            if spans and head not in out:  # a repeated docstring counts once
                out[head] = (f["rel"], head, tuple(spans))
    return tuple(out[h] for h in sorted(out))


def ramp_examples(
    split: str,
    per_k: int,
    max_spans: int = 4,
    max_chars: int = 128,
    seed: int = 0,
    root: str | None = None,
    fits=None,
    valid_percent: int = 5,
    repeat: bool = False,
) -> list[RampExample]:
    """``per_k`` examples with each number of masked spans k = 1..``max_spans`` (in that order), from the docstrings
    of the ``split`` files ('train' or 'valid', :func:`masklab.data.stdlib.split_of` with ``valid_percent``) that
    have at least k candidate spans. ``fits(span) -> bool`` (for example: the span's tokens fit a reader's slot)
    keeps only some candidates; ``repeat`` draws docstrings with replacement (a docstring may come back with other
    spans masked), else each at most once per k."""
    if split not in ("train", "valid"):
        raise ValueError(f"split must be 'train' or 'valid', got {split!r}")
    if per_k < 1 or max_spans < 1:
        raise ValueError(f"per_k and max_spans must be >= 1, got {per_k} and {max_spans}")
    pool = _pool(split, max_chars, root, valid_percent)
    if fits is not None:
        pool = [(rel, head, tuple(sp for sp in spans if fits(head[sp[0] : sp[1]]))) for rel, head, spans in pool]
    out = []
    for k in range(1, max_spans + 1):
        fit = [p for p in pool if len(p[2]) >= k]
        if len(fit) < per_k and not (repeat and fit):
            raise ValueError(
                f"ramp examples: only {len(fit)} {split} docstrings have {k} candidate spans, need {per_k}"
            )
        rng = np.random.default_rng([seed, k])
        for i in sorted(rng.choice(len(fit), per_k, replace=repeat)):
            rel, head, spans = fit[i]
            masked, answers, kinds = mask_spans(head, spans, k, rng)
            out.append(RampExample(head, masked, answers, kinds, rel))
    return out


def search_query(example: RampExample) -> str:
    """The tool's query: the masked docstring without its mask markers (the paper's rewriter is left out)."""
    return example.masked.replace(MASK, " ")


def encode_reader(tok, examples, passages, seq_len: int, slot: int) -> torch.Tensor:
    """[N, 2, seq_len] reader rows (ids, labels): ``[bos] passage [eos] masked docstring`` padded, each passage cut
    to the room its docstring leaves (``""``: no retrieval, the same length). Each :data:`MASK` becomes
    ``slot`` mask tokens labelled with the answer's tokens then ``eos``; labels are -100 elsewhere."""
    if len(examples) != len(passages):
        raise ValueError(f"passages has {len(passages)} entries for {len(examples)} examples")
    texts, rows = [], torch.full((len(examples), 2, seq_len), -100, dtype=torch.long)
    for e, passage in zip(examples, passages, strict=True):
        pieces = e.masked.split(MASK)
        if len(pieces) != len(e.answers) + 1:
            raise ValueError(f"example has {len(pieces) - 1} {MASK} markers for {len(e.answers)} answers")
        # Cut the passage first (encoding is slow): the room is under seq_len tokens, and a byte-level BPE token of
        # code rarely spans 8 characters.
        texts += [*pieces, *e.answers, passage[: 8 * seq_len]]
    # One call per string: on a busy 2-core machine the batched call's thread pool was slower (3.4 s vs 2.7 s).
    encoded = iter([tok(t, add_special_tokens=False)["input_ids"] if t else [] for t in texts])
    for i, e in enumerate(examples):
        k = len(e.answers)
        between, targets, passage_ids = (
            [next(encoded) for _ in range(k + 1)],
            [next(encoded) for _ in range(k)],
            next(encoded),
        )
        doc, labels = list(between[0]), [-100] * len(between[0])
        for answer, target, rest in zip(e.answers, targets, between[1:], strict=True):
            if len(target) > slot:
                raise ValueError(f"answer {answer!r} is {len(target)} tokens, longer than the slot ({slot})")
            doc += [tok.mask_token_id] * slot + rest
            labels += target + [tok.eos_token_id] * (slot - len(target)) + [-100] * len(rest)
        room = seq_len - 2 - len(doc)
        if room < 0:
            raise ValueError(f"seq_len={seq_len} is too short for a masked docstring of {len(doc)} tokens")
        ids = [tok.bos_token_id, *passage_ids[:room], tok.eos_token_id, *doc]
        rows[i, 0] = tok.pad_token_id
        rows[i, 0, : len(ids)] = torch.tensor(ids)
        rows[i, 1, len(ids) - len(doc) : len(ids)] = torch.tensor(labels)
    return rows


RETRIEVALS = ("none", "bm25", "bm25-other-files")


@lru_cache(maxsize=1)
def stdlib_tool(root: str | None = None) -> BM25Tool:
    """The BM25 tool over :func:`code_chunks` (built once per process: ~4 s for ~35k windows)."""
    return BM25Tool(*code_chunks(root))


def _stdlib_search(queries: list[str], k: int, exclude) -> list[list[int]]:
    """:meth:`BM25Tool.search` on :func:`stdlib_tool`, cached on disk by the corpus and the queries (BM25 over ~35k
    windows costs ~2.5 ms a query on one core)."""
    digest = hashlib.sha256(json.dumps([_stdlib_key(None), queries, k, exclude]).encode()).hexdigest()[:16]
    return _cached_json(f"ramp-search-{digest}.json", lambda: stdlib_tool().search(queries, k, exclude))


def retrieve(examples, retrieval: str, k: int = 1, tool: BM25Tool | None = None) -> list[str]:
    """One passage per example: ``""`` for ``none``; else the top ``k`` windows of ``tool`` (default: the stdlib's)
    for :func:`search_query`, joined by a space, best first (``bm25-other-files``: windows of the docstring's own
    file left out)."""
    if retrieval not in RETRIEVALS:
        raise ValueError(f"retrieval must be one of {', '.join(RETRIEVALS)}, got {retrieval!r}")
    if retrieval == "none":
        return [""] * len(examples)
    queries = [search_query(e) for e in examples]
    exclude = [e.file for e in examples] if retrieval == "bm25-other-files" else None
    found = tool.search(queries, k, exclude) if tool else _stdlib_search(queries, k, exclude)
    passages = tool.passages if tool else code_chunks()[0]
    return [" ".join(passages[i] for i in row) for row in found]
