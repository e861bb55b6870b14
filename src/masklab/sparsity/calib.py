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

__all__ = ["stdlib_docstrings", "tokenize_batches"]


def _split_of(rel: str, heldout_fraction: float) -> str:
    h = int.from_bytes(hashlib.sha256(rel.encode()).digest()[:8], "big") / 2**64
    return "heldout" if h < heldout_fraction else "train"


def stdlib_docstrings(
    split: str | None = None, limit: int | None = None, min_chars: int = 40, heldout_fraction: float = 0.2
) -> list[str]:
    """Docstrings (module, class, function) of ``*.py`` files in the stdlib, in sorted file order.

    ``split``: ``"train"``, ``"heldout"`` or ``None`` (both). ``limit`` caps the number returned.
    """
    if split not in (None, "train", "heldout"):
        raise ValueError(f"split must be 'train', 'heldout' or None, got {split!r}")
    root = Path(sysconfig.get_paths()["stdlib"])
    out: list[str] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("site-packages/", "test/", "idlelib/idle_test/")) or "/tests/" in rel:
            continue
        if split is not None and _split_of(rel, heldout_fraction) != split:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        nodes = [tree] + [
            n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        ]
        for node in nodes:
            doc = ast.get_docstring(node)
            if doc and len(doc) >= min_chars:
                out.append(" ".join(doc.split()))
                if limit is not None and len(out) >= limit:
                    return out
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
