"""The embedded corpus: the Python standard library of the running interpreter.

Every Python install has it, so ``masklab train`` works offline with no download. Two views:
``stdlib-code`` (the source text of each ``.py`` file) and ``stdlib-docs`` (docstrings extracted with ``ast``).
Test folders and site-packages are excluded. The train/valid split hashes each file's relative path, so it is the
same on every machine with the same Python, and a fingerprint (Python version + content hash) names the corpus.
"""

from __future__ import annotations

import ast
import hashlib
import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Corpus", "load_stdlib", "split_of", "VIEWS"]

VIEWS = ("stdlib-code", "stdlib-docs")
_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}


@dataclass
class Corpus:
    """Documents split into train and valid, with a fingerprint that names the exact content."""

    name: str
    train: list[str]
    valid: list[str]
    fingerprint: str
    train_names: list[str] | None = None
    valid_names: list[str] | None = None


def split_of(relpath: str, valid_percent: int = 5) -> str:
    """'valid' for about ``valid_percent``% of paths, chosen by a hash of the path alone."""
    h = int.from_bytes(hashlib.sha256(relpath.encode()).digest()[:4], "big")
    return "valid" if h % 100 < valid_percent else "train"


def stdlib_files(root: str | None = None) -> list[tuple[str, Path]]:
    """Sorted (relative path, path) of the stdlib's ``.py`` files, without tests and site-packages."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.endswith("_test"))
        for f in filenames:
            if f.endswith(".py"):
                p = Path(dirpath) / f
                out.append((p.relative_to(root).as_posix(), p))
    return sorted(out)


def docstrings(source: str) -> list[str]:
    """Module, class and function docstrings of one source file, in source order."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    nodes = [tree] + [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)]
    docs = (ast.get_docstring(n, clean=True) for n in nodes)
    return [d for d in docs if d and d.strip()]


def load_stdlib(view: str = "stdlib-code", valid_percent: int = 5, root: str | None = None) -> Corpus:
    """Read the stdlib corpus at run time. ``view`` is 'stdlib-code' or 'stdlib-docs'."""
    if view not in VIEWS:
        raise ValueError(f"unknown stdlib view {view!r}; choose from {VIEWS}")
    digest = hashlib.sha256()
    splits: dict[str, tuple[list[str], list[str]]] = {"train": ([], []), "valid": ([], [])}
    for rel, path in stdlib_files(root):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        digest.update(rel.encode() + b"\0" + text.encode() + b"\0")
        docs = [text] if view == "stdlib-code" else docstrings(text)
        texts, names = splits[split_of(rel, valid_percent)]
        texts.extend(docs)
        names.extend([rel] * len(docs))
    if not splits["train"][0]:
        raise FileNotFoundError(f"no stdlib sources found under {root or sysconfig.get_paths()['stdlib']}")
    version = ".".join(map(str, sys.version_info[:3]))
    fp = f"py{version}-{view}-{digest.hexdigest()[:12]}"
    return Corpus(view, splits["train"][0], splits["valid"][0], fp, splits["train"][1], splits["valid"][1])
