"""Offline calibration text: docstrings of the running interpreter's standard library, and tokenised batches.

Docstrings are extracted with ``ast`` (nothing is imported or executed). Each file goes to the train or the
held-out split by a hash of its path relative to the stdlib root, so the split is stable across runs and
machines with the same Python version, and no file contributes to both splits.
"""

from __future__ import annotations

import ast
import hashlib
import sysconfig
from pathlib import Path

import torch

__all__ = ["stdlib_docstrings", "stdlib_docstring_splits", "tokenize_batches"]


def _split_of(rel: str, heldout_fraction: float) -> str:
    h = int.from_bytes(hashlib.sha256(rel.encode()).digest()[:8], "big") / 2**64
    return "heldout" if h < heldout_fraction else "train"


def _iter_docstrings(min_chars: int, heldout_fraction: float):
    """Yield ``(split, docstring)`` over the stdlib's ``*.py`` files in sorted order (tests skipped)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("site-packages/", "test/", "idlelib/idle_test/")) or "/tests/" in rel:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        split = _split_of(rel, heldout_fraction)
        defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
        for node in [tree] + [n for n in ast.walk(tree) if isinstance(n, defs)]:
            doc = ast.get_docstring(node)
            if doc and len(doc) >= min_chars:
                yield split, " ".join(doc.split())


def stdlib_docstring_splits(
    min_chars: int = 40, heldout_fraction: float = 0.2, limit: int | None = None
) -> dict[str, list[str]]:
    """``{"train": [...], "heldout": [...]}`` from one pass over the stdlib (module, class and function
    docstrings, whitespace collapsed). ``limit`` stops after that many docstrings in total."""
    out: dict[str, list[str]] = {"train": [], "heldout": []}
    for i, (split, doc) in enumerate(_iter_docstrings(min_chars, heldout_fraction)):
        if limit is not None and i >= limit:
            break
        out[split].append(doc)
    return out


def stdlib_docstrings(split: str | None = None, limit: int | None = None, min_chars: int = 40) -> list[str]:
    """Docstrings of one split (``"train"``, ``"heldout"``) or both (``None``); ``limit`` caps the number."""
    if split not in (None, "train", "heldout"):
        raise ValueError(f"split must be 'train', 'heldout' or None, got {split!r}")
    out: list[str] = []
    for s, doc in _iter_docstrings(min_chars, 0.2):
        if limit is not None and len(out) >= limit:
            break
        if split is None or s == split:
            out.append(doc)
    return out


def tokenize_batches(tokenizer, texts: list[str], batch_size: int = 16, max_length: int = 128) -> list[dict]:
    """Tokenise ``texts`` into padded batches (dicts of tensors, as the model's ``forward`` takes them)."""
    if not texts:
        raise ValueError("no calibration texts to tokenise")
    if getattr(tokenizer, "pad_token", None) is None and getattr(tokenizer, "eos_token", None) is not None:
        tokenizer.pad_token = tokenizer.eos_token
    batches = []
    for i in range(0, len(texts), batch_size):
        chunk = texts[i : i + batch_size]
        enc = tokenizer(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        batches.append({k: v for k, v in enc.items() if isinstance(v, torch.Tensor)})
    return batches
