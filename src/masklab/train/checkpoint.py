"""Checkpoints: a ``save_pretrained`` folder (safetensors) + tokenizer + ``masklab.json``, written atomically.

``masklab.json`` holds the resolved recipe, the data fingerprint, the step and a manifest with the size and SHA-256
of every file, which :func:`verify` checks on load, so a truncated or corrupted checkpoint fails with a clear error.
The optimizer state is stored as safetensors too: nothing is ever unpickled.

Layout of a run folder: ``OUT/model/`` is the latest checkpoint; ``OUT/metrics.jsonl`` the training log.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

__all__ = [
    "MANIFEST",
    "Loaded",
    "file_table",
    "load",
    "load_optimizer",
    "read_optimizer",
    "read_manifest",
    "resolve",
    "save",
    "verify",
    "write_manifest",
]

MANIFEST = "masklab.json"
FORMAT = 1


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _optimizer_tensors(optimizer: torch.optim.Optimizer | dict) -> tuple[dict, dict]:
    sd = optimizer if isinstance(optimizer, dict) else optimizer.state_dict()
    tensors = {
        f"state.{i}.{k}": v.contiguous() for i, st in sd["state"].items() for k, v in st.items() if torch.is_tensor(v)
    }
    return tensors, {"param_groups": json.dumps(sd["param_groups"])}


def save(
    path: str | os.PathLike,
    objective,
    *,
    recipe: dict,
    step: int,
    tokenizer=None,
    optimizer=None,
    info: dict | None = None,
) -> Path:
    """Write a checkpoint to ``path`` atomically: build it in a temp folder, then swap it in. ``optimizer`` is an
    optimizer or its ``state_dict()`` (integer parameter ids, full tensors)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # save_pretrained's shard bar would break our own progress bar
    objective.save_model(tmp)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    if optimizer is not None:
        tensors, meta = _optimizer_tensors(optimizer)
        save_file(tensors, tmp / "optimizer.safetensors", metadata=meta)
    write_manifest(tmp, {"step": step, "recipe": recipe, "info": info or {}})
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
    return path


def resolve(path: str | os.PathLike) -> Path:
    """The checkpoint folder for ``path``: a checkpoint itself, or a run folder holding ``model/``."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no checkpoint at {p}: it does not exist")
    if not p.is_dir():
        raise ValueError(f"{p} is not a folder, so not a masklab checkpoint")
    for candidate in (p, p / "model"):
        if (candidate / MANIFEST).is_file():
            return candidate
    raise ValueError(f"{p} is not a masklab checkpoint (no {MANIFEST}); pass a run folder or its model/ folder")


def read_manifest(path: Path) -> dict:
    try:
        meta = json.loads((path / MANIFEST).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path / MANIFEST} is corrupted: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "files" not in meta:
        raise ValueError(f"{path / MANIFEST} is not a masklab checkpoint manifest of format {FORMAT}")
    return meta


def verify(path: str | os.PathLike) -> dict:
    """Check every file against the manifest (size, then SHA-256). Returns the manifest."""
    path = resolve(path)
    meta = read_manifest(path)
    for name, want in meta["files"].items():
        f = path / name
        if not f.is_file():
            raise ValueError(f"checkpoint {path} is incomplete: {name} is missing")
        if f.stat().st_size != want["size"]:
            raise ValueError(
                f"checkpoint file {f} is truncated or corrupted ({f.stat().st_size} bytes, expected {want['size']})"
            )
        if _sha256(f) != want["sha256"]:
            raise ValueError(f"checkpoint file {f} is corrupted (SHA-256 does not match the manifest)")
    return meta


def read_optimizer(path: Path) -> dict:
    """The ``optimizer.state_dict()`` saved in the checkpoint ``path``."""
    f = Path(path) / "optimizer.safetensors"
    if not f.is_file():
        raise ValueError(f"checkpoint {path} has no optimizer state, so training cannot resume from it")
    from safetensors import safe_open

    with safe_open(f, "pt") as fh:
        groups = json.loads(fh.metadata()["param_groups"])
    flat = load_file(f)
    state: dict[int, dict] = {}
    for key, v in flat.items():
        _, i, name = key.split(".", 2)
        state.setdefault(int(i), {})[name] = v
    return {"state": state, "param_groups": groups}


def load_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> None:
    optimizer.load_state_dict(read_optimizer(path))


def file_table(folder: str | os.PathLike) -> dict:
    """``{relative name: {size, sha256}}`` of every file under ``folder`` but the manifest itself."""
    folder = Path(folder)
    return {
        p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def write_manifest(folder: str | os.PathLike, meta: dict) -> Path:
    """Write ``masklab.json`` in ``folder`` from ``meta`` with a fresh file table (sizes and SHA-256)."""
    folder = Path(folder)
    from masklab import __version__

    meta = {
        **meta,
        "format": FORMAT,
        "masklab": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "files": file_table(folder),
    }
    out = folder / MANIFEST
    out.write_text(json.dumps(meta, indent=2, sort_keys=True))
    return out


@dataclass
class Loaded:
    """What :func:`load` found: the folder, its verified manifest (``None`` for a plain Hugging Face folder), and
    the model and tokenizer (``model`` is ``None`` when loaded with ``model=False``; ``tokenizer`` is ``None`` when
    the folder has none)."""

    folder: Path
    manifest: dict | None
    model: object = None
    tokenizer: object = None


def _model_class(folder: Path):
    import transformers

    import masklab.models.moe_llama  # noqa: F401  (registers masklab's own model types with the Auto classes)
    import masklab.models.vit_mae  # noqa: F401

    config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    archs = getattr(config, "architectures", None) or []
    cls = getattr(transformers, archs[0], None) if archs else None
    return cls or transformers.AutoModel


def load(path: str | os.PathLike, *, model: bool = True) -> Loaded:
    """The one checkpoint loader: a run folder, a masklab checkpoint (verified against its manifest: sizes and
    SHA-256) or a plain Hugging Face ``save_pretrained`` folder (no ``masklab.json``), loaded offline with the class
    named by ``config.architectures[0]`` (``AutoModel`` if none). A missing, truncated or corrupted file is one
    ValueError."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no checkpoint at {p}: it does not exist")
    if not p.is_dir():
        raise ValueError(f"{p} is not a folder, so not a checkpoint")
    if is_checkpoint(p):
        folder = resolve(p)
        manifest = verify(folder)
    elif (p / "config.json").is_file():
        folder, manifest = p, None
    else:
        raise ValueError(
            f"{p} is not a masklab checkpoint (no {MANIFEST}) nor a Hugging Face model folder (no config.json); "
            "pass a run folder, its model/ folder or a save_pretrained folder"
        )
    if not model:
        return Loaded(folder, manifest)
    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        net = _model_class(folder).from_pretrained(folder, local_files_only=True).eval()
    except (OSError, ValueError, RuntimeError, KeyError, json.JSONDecodeError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"cannot load the model in {folder} (truncated or corrupted?): {msg}") from None
    except Exception as e:  # safetensors' SafetensorError is not an OSError
        if type(e).__name__ != "SafetensorError":
            raise
        raise ValueError(f"cannot load the model in {folder}: a weight file is truncated or corrupted ({e})") from None
    try:
        tok = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, TypeError):
        tok = None
    return Loaded(folder, manifest, net, tok)


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a masklab checkpoint or a run folder holding one (else a plain model folder)."""
    p = Path(path)
    return any((c / MANIFEST).is_file() for c in (p, p / "model"))


def load_masked_lm(path: str | os.PathLike):
    """(model in eval mode, tokenizer) of a masked LM: a verified masklab checkpoint or run folder, or any
    Hugging Face masked-LM folder (or cached hub id) with a mask token. A folder without what a masked LM
    needs (an MLM head, a mask token, an encoder or an adapted causal LM) is one ValueError saying what."""
    from masklab.models.pretrained import load_pretrained

    folder = path
    if is_checkpoint(path):
        folder = load(path, model=False).folder  # verified against its manifest
    elif not Path(path).exists() and not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", str(path)):
        raise FileNotFoundError(f"no checkpoint at {path}: it does not exist")  # and it cannot be a hub id
    try:
        pre = load_pretrained(folder, head="masked", fresh_head=False)
    except ValueError as e:
        raise ValueError(str(e).removeprefix("init: ")) from None
    return pre.model.eval(), pre.tokenizer
