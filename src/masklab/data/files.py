"""User corpora: ``.txt`` / ``.jsonl`` files or folders of them, and Hugging Face ``datasets`` names or paths."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from masklab.data.stdlib import VIEWS, Corpus, load_stdlib, split_of

__all__ = ["load_corpus", "load_files", "load_hf_dataset"]

_SUFFIXES = (".txt", ".jsonl")


def _read(path: Path, text_key: str) -> list[str]:
    if path.suffix == ".txt":
        return [path.read_text(encoding="utf-8")]
    docs = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get(text_key), str):
            raise ValueError(f"{path}:{n}: expected an object with a string field {text_key!r}")
        docs.append(row[text_key])
    return docs


def load_files(path: str | Path, valid_percent: int = 5, text_key: str = "text") -> Corpus:
    """A ``.txt`` file (one document), a ``.jsonl`` file (one document per line) or a folder of them."""
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"data path {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix in _SUFFIXES and p.is_file()) if root.is_dir() else [root]
    if root.is_file() and root.suffix not in _SUFFIXES:
        raise ValueError(f"data file {root} must be .txt or .jsonl")
    digest = hashlib.sha256()
    train, valid, tn, vn = [], [], [], []
    for f in files:
        rel = f.relative_to(root).as_posix() if root.is_dir() else f.name
        for i, doc in enumerate(d for d in _read(f, text_key) if d.strip()):
            key = f"{rel}#{i}"
            digest.update(key.encode() + b"\0" + doc.encode() + b"\0")
            in_valid = split_of(key, valid_percent) == "valid"
            (valid if in_valid else train).append(doc)
            (vn if in_valid else tn).append(key)
    if not train and not valid:
        raise ValueError(f"data path {root} holds no non-empty .txt or .jsonl documents")
    if not valid:  # tiny corpora: keep at least one document for validation
        valid, vn = train[-1:], tn[-1:]
        train, tn = train[:-1] or valid, tn[:-1] or vn
    if not train:  # ...and at least one for training
        train, tn = valid, vn
    return Corpus(str(root), train, valid, f"files-{digest.hexdigest()[:12]}", tn, vn)


def load_hf_dataset(
    name: str,
    split_train: str = "train",
    split_valid: str | None = None,
    text_key: str = "text",
    valid_percent: int = 5,
) -> Corpus:
    """A Hugging Face ``datasets`` dataset by hub name or local path (``load_dataset``/``load_from_disk``).

    masklab never downloads in tests; the same code reads hub names when the network allows it.
    """
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is an optional dependency
        raise ValueError("--data with a datasets name needs the 'datasets' package: pip install masklab[hf]") from None
    path = Path(name)
    try:
        ds = datasets.load_from_disk(str(path)) if _is_saved_dataset(path) else datasets.load_dataset(name)
    except Exception as e:  # datasets raises many types (offline, missing, bad config): report in one line
        raise ValueError(f"could not load dataset {name!r}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    if isinstance(ds, datasets.Dataset):
        ds = datasets.DatasetDict({split_train: ds})
    if split_train not in ds:
        raise ValueError(f"dataset {name} has no split {split_train!r} (has {list(ds)})")
    if text_key not in ds[split_train].column_names:
        raise ValueError(f"dataset {name} has no text column {text_key!r} (has {ds[split_train].column_names})")
    train = [t for t in ds[split_train][text_key] if t and t.strip()]
    split_valid = split_valid or next((s for s in ("validation", "valid", "test") if s in ds), None)
    if split_valid:
        valid = [t for t in ds[split_valid][text_key] if t and t.strip()]
    else:
        keys = [f"{i}" for i in range(len(train))]
        valid = [t for t, k in zip(train, keys, strict=True) if split_of(k, valid_percent) == "valid"]
        train = [t for t, k in zip(train, keys, strict=True) if split_of(k, valid_percent) == "train"]
    if not train:
        raise ValueError(f"dataset {name} has no non-empty text in split {split_train!r}")
    digest = hashlib.sha256("\0".join(train + ["|"] + valid).encode()).hexdigest()[:12]
    return Corpus(name, train, valid or train[-1:], f"hf-{digest}")


def _is_saved_dataset(path: Path) -> bool:
    return any((path / f).exists() for f in ("dataset_dict.json", "dataset_info.json", "state.json"))


def load_corpus(data: str) -> Corpus:
    """Resolve ``--data``: a stdlib view, ``kv-retrieval`` (:mod:`masklab.data.kv_retrieval`), a local .txt/.jsonl
    file or folder, or a datasets name or path."""
    if not data or not str(data).strip():
        raise ValueError("--data is empty")
    if data == "kv-retrieval":
        from masklab.data.kv_retrieval import kv_corpus

        return kv_corpus()
    if data in VIEWS or data == "stdlib":
        return load_stdlib("stdlib-code" if data == "stdlib" else data)
    path = Path(data).expanduser()
    if path.is_file():
        return load_files(path)
    if path.is_dir():
        if _is_saved_dataset(path):
            return load_hf_dataset(str(path))
        if any(p.suffix in _SUFFIXES for p in path.rglob("*")):
            return load_files(path)
        raise ValueError(f"data folder {path} holds no .txt or .jsonl files (nor a saved datasets dataset)")
    if data.startswith((".", "/", "~")) or path.suffix in _SUFFIXES:
        raise FileNotFoundError(f"data path {data} does not exist")
    return load_hf_dataset(data)
