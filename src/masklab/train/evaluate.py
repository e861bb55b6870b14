"""Held-out metrics of a saved run or of any Hugging Face model folder: ``evaluate_checkpoint`` (what
``masklab eval`` prints).

A masklab checkpoint: the recipe comes from its verified manifest, the tokenizer saved with the model replaces a
retrained one (and a run started from ``init=`` reloads from the checkpoint itself), and the objective scores the
recipe's valid split (or ``data``) with the eval keys of the recipe's seed, so the numbers are those the training
run reported for the same batches.

A plain Hugging Face folder has no recipe and no data: ``data`` is required, and ``recipe`` names the objective
(default: ``mlm`` for an encoder, ``mdm`` for a causal LM adapted by masklab, ``ar`` for a causal LM).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from masklab.train import checkpoint
from masklab.train.recipes.base import apply_overrides, from_dict

__all__ = ["evaluate_checkpoint", "EVAL_BATCH"]

EVAL_BATCH = 32  # examples per held-out batch of the recipes' valid loaders


def _plain_recipe(folder, data: str | None, recipe: str | None):
    """The recipe that evaluates a plain Hugging Face folder on ``data``."""
    from transformers import AutoConfig

    from masklab.models.pretrained import ADAPT_KEY, is_causal_config
    from masklab.train.recipes.base import get_recipe

    if not data:
        raise ValueError(f"{folder} is a plain Hugging Face folder with no recipe or data: give --data")
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    if recipe is None:
        adapted = getattr(config, ADAPT_KEY, None) == "causal"
        recipe = "mdm" if adapted else "ar" if is_causal_config(config) else "mlm"
    base = get_recipe(recipe)
    seq_len = min(base.seq_len, getattr(config, "max_position_embeddings", base.seq_len) - 1)
    return apply_overrides(base, [f"init={folder}", f"data={data}", f"seq_len={seq_len}"])


def evaluate_checkpoint(
    path: str | os.PathLike,
    *,
    data: str | None = None,
    batches: int | None = None,
    device: str | None = None,
    recipe: str | None = None,
) -> dict:
    """Metrics of the model at ``path`` on its recipe's held-out split (see the module docstring).

    ``path``: a run folder, its ``model/``, or a plain Hugging Face folder (then ``data`` is required and
    ``recipe`` may name the objective). ``data`` evaluates on other data than the run's; ``batches`` caps the
    held-out batches (default: all); ``device`` defaults to CUDA when available. MDM objectives report
    ``nll_bound_bits``.
    """
    if batches is not None and (isinstance(batches, bool) or not isinstance(batches, int) or batches < 1):
        raise ValueError(f"batches must be a positive integer or None, got {batches!r}")
    if checkpoint.is_checkpoint(path):
        found = checkpoint.load(path, model=False)  # verified against its manifest
        ckpt, saved = found.folder, from_dict(found.manifest["recipe"])
        if recipe is not None and recipe != saved.name:
            raise ValueError(f"recipe: {path} was trained with recipe {saved.name!r}; it evaluates with that one")
        overrides = [f"init={ckpt}"] if getattr(saved, "init", None) else []  # reload from the trained weights
        if getattr(saved, "lora", 0):
            overrides.append("lora=0")  # the checkpoint's model is the merged one
        if hasattr(saved, "tokenizer") and (ckpt / "tokenizer.json").exists():
            overrides.append(f"tokenizer={ckpt}")  # the tokenizer saved with the model, not a retrained one
        if data:
            overrides.append(f"data={data}")
        run = apply_overrides(saved, overrides)
    else:
        if not Path(path).exists():
            raise FileNotFoundError(f"no checkpoint at {path}: it does not exist")
        ckpt, run = None, _plain_recipe(path, data, recipe)
    task = run.build()
    task.objective.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if ckpt is not None:
        task.objective.load_model(ckpt)
    result = task.objective.evaluate(task.valid, seed=run.seed, max_batches=batches)
    result.update({k: v for k, v in task.info.items() if k.startswith("valid_")})
    result["examples"] = len(task.valid) if batches is None else min(len(task.valid), EVAL_BATCH * batches)
    return result
