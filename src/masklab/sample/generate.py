"""``generate``: fill every masked position of ``input_ids`` with a masked-diffusion sampler."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from masklab.corrupt import keyed
from masklab.objectives.base import logits_of
from masklab.sample.samplers import SAMPLERS

__all__ = ["generate", "Generation", "row_keys", "as_model_fn"]


@dataclass
class Generation:
    ids: torch.Tensor  # [B, L] filled ids
    order: torch.Tensor  # [B, L] step at which each position was revealed; -1 for prompt tokens
    steps: int  # steps the sampler was given (= model calls at most)


def row_keys(seed: int | Sequence[int] | torch.Tensor | None, batch: int, device=None) -> torch.Tensor:
    """Per-row keys: one seed per row (the row's output then does not depend on its batch), or one seed for all
    rows (row r then draws from stream (seed, r))."""
    if seed is None:
        seed = 0
    if isinstance(seed, int):
        return keyed.example_keys(seed, 0, torch.arange(batch), device)
    seeds = torch.as_tensor(seed, dtype=torch.int64)
    if seeds.numel() != batch:
        raise ValueError(f"got {seeds.numel()} seeds for {batch} rows")
    return keyed.derive(seeds.to(device), 0x5EED)


def as_model_fn(model):
    """A callable ids -> logits [B, L, V], for an HF model or any callable returning logits."""

    def fn(x):
        with torch.no_grad():
            return logits_of(model(input_ids=x) if hasattr(model, "config") else model(x))

    return fn


def generate(model, input_ids: torch.Tensor, *, mask_id: int | None, sampler: str = "confidence",
             steps: int | None = None, temperature: float = 1.0, seed=None, top_k: int | None = None,
             top_p: float | None = None, return_order: bool = False, **options):
    """Fill every position of ``input_ids`` [B, L] (or [L]) that equals ``mask_id``.

    ``steps`` defaults to the largest number of masked tokens in a row (one token per step); more steps than that
    are clamped to it, since a step that commits nothing changes nothing. Returns the ids, or a
    :class:`Generation` with the reveal order when ``return_order`` is set.
    """
    if mask_id is None:
        raise ValueError("mask_id is missing: the tokenizer or model has no mask token")
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose from {sorted(SAMPLERS)}")
    squeeze = input_ids.dim() == 1
    x = input_ids[None] if squeeze else input_ids
    if x.dim() != 2 or x.shape[1] == 0:
        raise ValueError(f"input_ids must be a non-empty [B, L] tensor, got shape {tuple(input_ids.shape)}")
    n_max = int((x == mask_id).sum(1).max())
    if n_max == 0:
        raise ValueError("input_ids hold no mask token: nothing to generate")
    if steps is not None and steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    steps = min(steps or n_max, n_max)
    order = torch.where(x == mask_id, 0, -1).to(torch.long)
    out = SAMPLERS[sampler](as_model_fn(model), x, mask_id=mask_id, steps=steps,
                            keys=row_keys(seed, x.shape[0], x.device), temperature=temperature, top_k=top_k,
                            top_p=top_p, order=order, **options)
    if squeeze:
        out, order = out[0], order[0]
    return Generation(out, order, steps) if return_order else out
