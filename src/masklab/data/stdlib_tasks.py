"""Labelled tasks read off the Python standard library, for probes, fine-tuning and generative classification.

Every task takes its test examples from the corpus's *valid* files (:func:`masklab.data.stdlib.split_of`), which
no masklab run trains on, and its training examples from the train files. Each selection is fixed (numpy
``default_rng(0)``), so every run meets the same examples.

- :func:`keyword_lines`: a line of code with its leading keyword removed (``def f(x):`` -> ``f(x):``) -> which of
  :data:`KEYWORDS` it was (8 classes, balanced).
- :func:`docstring_families`: a docstring -> the top-level stdlib package it comes from (``email``, ``unittest``,
  ...): the packages with enough docstrings in both splits, up to 8.
- :func:`identifier_roles`: a line of code with the role of each identifier in it: ``def`` (bound: an assignment
  or ``for`` target, a parameter, a defined function or class), ``use`` (read) or ``attr`` (an attribute after a
  dot). The left context often decides (``def f``, ``.name``), but an assignment target is told from a read only
  by what follows it (``x = ...`` against ``x + ...``): the right context helps without deciding.
- :func:`keyword_task`: held-out code with one keyword replaced by ``<mask>`` (``masklab classify``).

:func:`label_tokens` maps character-level labels onto any tokenizer's tokens through its offsets.
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache

import numpy as np
import torch

__all__ = [
    "KEYWORDS",
    "ROLES",
    "SLOT",
    "keyword_lines",
    "docstring_families",
    "identifier_roles",
    "label_tokens",
    "keyword_task",
    "CLASSIFY_KEYWORDS",
]

KEYWORDS = ("def", "return", "if", "for", "import", "raise", "class", "with")
ROLES = ("def", "use", "attr")
SLOT = "<mask>"
CLASSIFY_KEYWORDS = ("def", "class", "return", "if", "for", "import", "from", "raise", "while", "with")


def _files(split: str, root: str | None = None, stride: int = 1):
    """(relative path, text) of the stdlib files of ``split`` ('train' or 'valid'), in path order; every
    ``stride``-th of them."""
    from masklab.data.stdlib import split_of, stdlib_files

    for rel, path in [f for f in stdlib_files(root) if split_of(f[0]) == split][::stride]:
        try:
            yield rel, path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue


def _balanced(pools: dict, per_class: int, what: str, rng) -> tuple[list, np.ndarray]:
    """``per_class`` items of each pool (in class order), drawn without replacement."""
    items, labels = [], []
    for label, pool in enumerate(pools.values()):
        pool = sorted(set(pool))
        if len(pool) < per_class:
            raise ValueError(f"{what}: only {len(pool)} examples of class {list(pools)[label]!r}, need {per_class}")
        items += [pool[i] for i in rng.choice(len(pool), per_class, replace=False)]
        labels += [label] * per_class
    return items, np.array(labels)


@lru_cache(maxsize=4)
def keyword_lines(train: int = 60, test: int = 25, root: str | None = None) -> dict[str, tuple[list[str], np.ndarray]]:
    """{"train" | "test": (lines without their keyword, index into :data:`KEYWORDS`)}, ``train`` / ``test`` lines
    per class."""
    rng = np.random.default_rng(0)
    out = {}
    for name, split, n in (("train", "train", train), ("test", "valid", test)):
        pools = {k: [] for k in KEYWORDS}
        for _, text in _files(split, root):
            for line in text.splitlines():
                head, _, rest = line.strip().partition(" ")
                rest = rest.strip()
                if head in pools and 3 <= len(rest) <= 80:
                    pools[head].append(rest)
        out[name] = _balanced(pools, n, "keyword lines", rng)
    return out


@lru_cache(maxsize=4)
def docstring_families(
    train: int = 20, test: int = 7, classes: int = 8, root: str | None = None
) -> tuple[tuple[str, ...], dict[str, tuple[list[str], np.ndarray]]]:
    """(family names, {"train" | "test": (docstrings, family index)}): the ``classes`` top-level packages with the
    most valid-split docstrings among those with at least ``train`` and ``test`` docstrings in each split; each
    docstring is cut to its first 400 characters."""
    from masklab.data.stdlib import docstrings

    pools: dict[str, dict[str, list[str]]] = {"train": {}, "valid": {}}
    for split in pools:
        for rel, text in _files(split, root):
            if "/" in rel:  # a package: its files may fall in both splits
                pools[split].setdefault(rel.split("/")[0], []).extend(d[:400] for d in docstrings(text))
    sizes = {f: (len(set(pools["train"].get(f, ()))), len(set(docs))) for f, docs in pools["valid"].items()}
    fit = [f for f, (n_train, n_test) in sizes.items() if n_train >= train and n_test >= test]
    families = tuple(sorted(sorted(fit, key=lambda f: -len(pools["valid"][f]))[:classes]))
    if len(families) < 4:
        raise ValueError(f"docstring families: only {len(families)} stdlib packages have enough docstrings")
    rng = np.random.default_rng(0)
    out = {}
    for name, split, n in (("train", "train", train), ("test", "valid", test)):
        out[name] = _balanced({f: pools[split][f] for f in families}, n, "docstring families", rng)
    return families, out


def _line_roles(text: str) -> dict[int, list[tuple[int, int, int]]]:
    """{line number: [(start column, end column, role)]} of the single-line identifiers of one ASCII file."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return {}
    lines = text.splitlines()
    found: dict[int, list[tuple[int, int, int]]] = {}

    def add(lineno: int, start: int, name: str, role: int) -> None:
        if lineno <= len(lines) and lines[lineno - 1][start : start + len(name)] == name:
            found.setdefault(lineno, []).append((start, start + len(name), role))

    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            add(node.lineno, node.col_offset, node.id, 1 if isinstance(node.ctx, ast.Load) else 0)
        elif isinstance(node, ast.arg):
            add(node.lineno, node.col_offset, node.arg, 0)
        elif isinstance(node, ast.Attribute) and node.end_lineno == node.value.end_lineno:
            add(node.end_lineno, node.end_col_offset - len(node.attr), node.attr, 2)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            m = re.match(r"\s*(?:async\s+)?(?:def|class)\s+(\w+)", lines[node.lineno - 1])
            if m and m.group(1) == node.name:
                add(node.lineno, m.start(1), node.name, 0)
    return found


@lru_cache(maxsize=4)
def identifier_roles(
    split: str, n: int, root: str | None = None
) -> tuple[tuple[str, tuple[tuple[int, int, int], ...]], ...]:
    """``n`` lines of the ``split`` files ('train': every eighth file; 'valid': all), each
    ``(line, ((start, end, role), ...))`` with
    its indentation removed and the character span and :data:`ROLES` index of each identifier; lines of 12-100
    ASCII characters with at least one identifier."""
    pool = []
    for _, text in _files(split, root, stride=8 if split == "train" else 1):  # an eighth of the train files suffice
        if not text.isascii():
            continue
        lines = text.splitlines()
        for lineno, spans in _line_roles(text).items():
            raw = lines[lineno - 1]
            line = raw.lstrip()
            cut = len(raw) - len(line)
            if 12 <= len(line) <= 100 and not line.startswith(("#", '"', "'")):
                pool.append((line.rstrip(), tuple(sorted((a - cut, b - cut, r) for a, b, r in set(spans)))))
    pool = sorted(set(pool))
    if len(pool) < n:
        raise ValueError(f"identifier roles: only {len(pool)} lines in the {split} files, need {n}")
    rng = np.random.default_rng(0)
    return tuple(pool[i] for i in sorted(rng.choice(len(pool), n, replace=False)))


def label_tokens(tokenizer, lines, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids [N, max_len] padded with the pad id, labels [N, max_len]): each identifier's role at its *last* token
    (the first that has read the whole name, so a causal model is not asked to guess the name), -100 elsewhere.
    ``lines`` are ``(text, spans)`` pairs as :func:`identifier_roles` returns; no special tokens are added."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(lines), max_len), pad, dtype=torch.long)
    labels = torch.full((len(lines), max_len), -100, dtype=torch.long)
    for i, (text, spans) in enumerate(lines):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        tok, offsets = enc["input_ids"][:max_len], enc["offset_mapping"][:max_len]
        ids[i, : len(tok)] = torch.tensor(tok, dtype=torch.long)
        for a, b, role in spans:
            inside = [j for j, (s, e) in enumerate(offsets) if e > s and s < b and e > a]
            if inside and offsets[inside[-1]][1] >= b:  # the identifier ends inside the window
                labels[i, inside[-1]] = role
    return ids, labels


def keyword_task(n: int = 300, context: int = 96, seed: int = 0, split: str = "valid"):
    """(texts, gold labels): lines of held-out stdlib code that start with a keyword in :data:`CLASSIFY_KEYWORDS`,
    the keyword replaced by ``<mask>``, with ``context`` characters of code on each side. Sampled evenly over
    files."""
    docs = [text for _, text in _files("valid" if split == "valid" else "train")]
    pat = re.compile(r"^([ \t]*)(" + "|".join(CLASSIFY_KEYWORDS) + r")\b", re.M)
    found = []
    for text in docs:
        for mt in pat.finditer(text):
            a, b = mt.start(2), mt.end(2)
            found.append((text[max(0, a - context) : a] + SLOT + text[b : b + context], mt.group(2)))
    if not found:
        raise ValueError(f"no keyword lines found in the stdlib {split} split")
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(found), generator=g)[:n].tolist()
    return [found[i][0] for i in pick], [found[i][1] for i in pick]
