"""LoRA adapters through the ``peft`` library (Hu et al., 2022, "LoRA: Low-Rank Adaptation of Large Language
Models"): ``lora=R`` in any text recipe.

:func:`add_lora` wraps the Hugging Face model (the causal LM inside a :class:`ShiftedMaskedLM`) in a
``peft.PeftModel``: the base weights are frozen, only the ``A``/``B`` matrices train, and ``B`` starts at zero, so
the adapted model starts as the base model exactly. What the base model carries stays: masklab attention masks
set per layer (``masklab.attention.hf``, e.g. "Do Not (Always) Look Right"'s bidirectional layer groups) still
apply, and a sparsified base keeps its zeros (they are frozen). A checkpoint holds both the adapter
(``adapter/``, which ``peft.PeftModel.from_pretrained(base, folder / "adapter")`` reloads) and the merged model
(the folder itself, which every masklab command reads).
"""

from __future__ import annotations

import copy
from pathlib import Path

from torch import nn

__all__ = ["add_lora", "peft_model", "merged", "ADAPTER"]

ADAPTER = "adapter"  # the adapter's subfolder in a checkpoint


def _host(model: nn.Module):
    """(object, attribute) holding the Hugging Face model that gets the adapter."""
    from masklab.models.pretrained import ShiftedMaskedLM

    return (model, "lm") if isinstance(model, ShiftedMaskedLM) else (None, None)


def add_lora(
    model: nn.Module,
    r: int,
    alpha: float,
    targets: str = "all-linear",
    dropout: float = 0.0,
    train_modules: tuple[str, ...] = (),
) -> nn.Module:
    """``model`` with LoRA adapters of rank ``r`` on the modules named by ``targets`` (comma-separated name
    suffixes, or ``all-linear``: every linear layer but the output head, peft's rule). ``train_modules`` are
    trained in full and saved with the adapter (peft's ``modules_to_save``: a fresh classification head). A target
    that matches no module is one ValueError."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ValueError("lora needs the peft library: pip install 'masklab[hf]'") from None
    if r < 1:
        raise ValueError(f"lora rank must be >= 1, got {r}")
    owner, attr = _host(model)
    base = getattr(owner, attr) if owner is not None else model
    names = [n for n, _ in base.named_modules()]
    wanted = "all-linear" if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()]
    if wanted != "all-linear":
        missing = [t for t in wanted if not any(n == t or n.endswith("." + t) for n in names)]
        if missing:
            raise ValueError(f"lora target {missing[0]!r} matches no module of {type(base).__name__}")
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=wanted, bias="none",
                        modules_to_save=list(train_modules) or None)  # fmt: skip
    wrapped = get_peft_model(base, config)
    if owner is None:
        return wrapped
    setattr(owner, attr, wrapped)
    return owner


def peft_model(model: nn.Module):
    """The ``PeftModel`` inside ``model`` (itself or its causal LM), or None."""
    for m in (model, getattr(model, "lm", None)):
        if m is not None and type(m).__name__.startswith("Peft"):
            return m
    return None


def merged(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with its adapters merged into the base weights (a plain Hugging Face model)."""
    out = copy.deepcopy(model)
    owner, attr = _host(out)
    if owner is not None:
        setattr(owner, attr, getattr(owner, attr).merge_and_unload())
        return owner
    return out.merge_and_unload()


def adapter_folder(path: str | Path) -> Path:
    return Path(path) / ADAPTER
