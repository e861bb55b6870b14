"""Prune a Hugging Face or masklab checkpoint folder to N:M and save it (the library side of ``masklab sparsify``).

The model is read with the one verified loader (:func:`masklab.train.checkpoint.load`). The output folder holds the
pruned ``save_pretrained`` weights and config, the tokenizer, every other file of the source folder unchanged
(sentence-transformers ``modules.json``, ``1_Pooling/``, ``2_Normalize/``, ...), ``sparsity.json`` (what was pruned
and how, with the per-layer report), and a fresh ``masklab.json`` manifest: new sizes and SHA-256, no optimizer
state, and a ``sparsity`` record (method, N:M, filter, calibration).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from masklab.train import checkpoint

from .apply import sparsify_

__all__ = ["calib_batches", "prune_folder", "output_folder"]

# Files of the source folder that pruning replaces or makes stale: the weights, the optimizer, the manifest.
_REPLACED = re.compile(r"^(model.*\.safetensors(\.index\.json)?|pytorch_model.*\.bin(\.index\.json)?|optimizer\..*)$")


def calib_batches(calib: str | None, tok, model=None, *, samples: int = 64, max_length: int = 128, batch_size=16):
    """Calibration batches from ``calib`` ('stdlib' or a .txt file, one text per line), or None."""
    from .calib import stdlib_docstrings, tokenize_batches

    if calib is None:
        return None
    if tok is None:
        raise ValueError("calib: the checkpoint has no tokenizer to encode calibration text")
    if calib == "stdlib":
        texts = stdlib_docstrings("train", limit=samples)
    else:
        path = Path(calib)
        if not path.is_file():
            raise FileNotFoundError(f"calibration file {path} does not exist")
        texts = [t for t in path.read_text(encoding="utf-8").splitlines() if t.strip()][:samples]
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None) or max_length
    return tokenize_batches(tok, texts, batch_size, min(max_length, limit))


def output_folder(out: str | os.PathLike) -> Path:
    """``out`` as a folder to write: created only if its parent exists."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {out} exists and is not a folder")
    if not out.exists():
        if not out.parent.is_dir():
            raise ValueError(f"out: the parent folder {out.parent} does not exist (create it first)")
        out.mkdir()
    return out


def prune_folder(
    model: str | os.PathLike,
    out: str | os.PathLike,
    *,
    method: str = "magnitude",
    n: int = 2,
    m: int = 4,
    calib: str | None = None,
    calib_samples: int = 64,
    max_length: int = 128,
    batch_size: int = 16,
    filter: str | None = None,
    steps: int = 100,
    pad: bool = False,
):
    """Prune the checkpoint folder ``model`` with ``method`` at ``n``:``m`` and write it to ``out``.

    Returns the :class:`~masklab.sparsity.apply.SparsityReport`."""
    if filter is not None:
        try:
            re.compile(filter)
        except re.error as e:
            raise ValueError(f"filter {filter!r} is not a valid regular expression: {e}") from None
    src = checkpoint.load(model)
    batches = calib_batches(
        calib, src.tokenizer, src.model, samples=calib_samples, max_length=max_length, batch_size=batch_size
    )
    options = {"pad": True} if pad else {}
    if method == "maskllm":
        options = {"steps": steps}
    report = sparsify_(src.model, method, n, m, calib=batches, filter=filter, **options)
    out = output_folder(out)
    if out.resolve() == src.folder.resolve():
        raise ValueError(f"out: {out} is the source folder; write the pruned model to a new folder")
    src.model.save_pretrained(out)
    if src.tokenizer is not None:
        src.tokenizer.save_pretrained(out)
    for f in sorted(src.folder.rglob("*")):  # copy through what pruning does not change
        rel = f.relative_to(src.folder)
        if not f.is_file() or rel.as_posix() in (checkpoint.MANIFEST, "sparsity.json") or _REPLACED.match(rel.name):
            continue
        if not (out / rel).exists():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, out / rel)
    how = {
        "method": method,
        "n": n,
        "m": m,
        "filter": filter,
        "calib": calib,
        "calib_samples": calib_samples if calib else None,
        "max_length": max_length if calib else None,
        "options": options,
        "source": str(model),
    }
    (out / "sparsity.json").write_text(json.dumps({"args": how, "report": report.to_dict()}, indent=2))
    meta = dict(src.manifest or {"recipe": None, "step": None, "info": {}})
    meta.pop("files", None)
    meta["sparsity"] = {**how, "sparsity": report.sparsity, "layers": len(report.layers)}
    checkpoint.write_manifest(out, meta)
    return report
