"""Held-out metrics of a saved run: ``evaluate_checkpoint`` (what ``masklab eval`` prints).

The recipe comes from the checkpoint's verified manifest, the tokenizer saved with the model replaces a
retrained one, and the objective scores the recipe's valid split (or ``data``) with the eval keys of the
recipe's seed, so the numbers are those the training run reported for the same batches.
"""

from __future__ import annotations

import os

import torch

from masklab.train import checkpoint
from masklab.train.recipes.base import apply_overrides, from_dict

__all__ = ["evaluate_checkpoint", "EVAL_BATCH"]

EVAL_BATCH = 32  # examples per held-out batch of the recipes' valid loaders


def evaluate_checkpoint(
    path: str | os.PathLike, *, data: str | None = None, batches: int | None = None, device: str | None = None
) -> dict:
    """Metrics of the checkpoint at ``path`` (a run folder or its ``model/``) on its recipe's held-out split.

    ``data`` evaluates on other data than the run's; ``batches`` caps the held-out batches (default: all);
    ``device`` defaults to CUDA when available. MDM objectives report ``nll_bound_bits``.
    """
    if batches is not None and (isinstance(batches, bool) or not isinstance(batches, int) or batches < 1):
        raise ValueError(f"batches must be a positive integer or None, got {batches!r}")
    ckpt = checkpoint.resolve(path)
    recipe = from_dict(checkpoint.verify(ckpt)["recipe"])
    overrides = []
    if hasattr(recipe, "tokenizer") and (ckpt / "tokenizer.json").exists():
        overrides.append(f"tokenizer={ckpt}")  # the tokenizer saved with the model, not a retrained one
    if data:
        overrides.append(f"data={data}")
    task = apply_overrides(recipe, overrides).build()
    task.objective.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    task.objective.load_model(ckpt)
    result = task.objective.evaluate(task.valid, seed=recipe.seed, max_batches=batches)
    result.update({k: v for k, v in task.info.items() if k.startswith("valid_")})
    result["examples"] = len(task.valid) if batches is None else min(len(task.valid), EVAL_BATCH * batches)
    return result
