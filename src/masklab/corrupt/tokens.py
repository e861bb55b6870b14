"""Random token masking (BERT, Devlin et al. 2019, Sec. 3.1): select positions, then mask / random / keep.

Selected positions get the mask token with probability ``mix[0]``, a random non-special token with
``mix[1]`` and stay unchanged with ``mix[2]`` (80/10/10 by default). Special and pad tokens are never selected and
never drawn as replacements. A row that holds only special tokens is left untouched (documented no-op).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from masklab.corrupt import keyed
from masklab.corrupt.record import IGNORE_INDEX, MASKED, RANDOM, UNCHANGED, Corruption

__all__ = ["random_mask", "eligible", "replacement_pool", "check_prob"]


def check_prob(name: str, p: float) -> float:
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {p}")
    return float(p)


def eligible(ids: torch.Tensor, special_ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """[B, L] bool: positions that may be selected (not a special or pad token)."""
    special = torch.as_tensor(list(special_ids) if not torch.is_tensor(special_ids) else special_ids,
                              dtype=ids.dtype, device=ids.device)
    return ~torch.isin(ids, special)


def replacement_pool(vocab_size: int, special_ids, device=None) -> torch.Tensor:
    """Sorted ids that may be drawn as random replacements: the vocabulary minus special tokens."""
    keep = torch.ones(vocab_size, dtype=torch.bool, device=device)
    special = torch.as_tensor(list(special_ids), dtype=torch.long, device=device)
    keep[special[(special >= 0) & (special < vocab_size)]] = False
    if not keep.any():
        raise ValueError("the vocabulary holds only special tokens: nothing to draw as a random replacement")
    return keep.nonzero().squeeze(1)


def select_count(can: torch.Tensor, u: torch.Tensor, count: int | torch.Tensor) -> torch.Tensor:
    """Exactly min(count, eligible) positions per row, uniformly without replacement: the smallest keys win."""
    score = torch.where(can, u, torch.full_like(u, 2.0))  # ineligible positions sort last
    rank = score.argsort(dim=1).argsort(dim=1)
    count = torch.as_tensor(count, device=can.device).reshape(-1, 1)
    return (rank < count) & can


def apply_mix(ids: torch.Tensor, selected: torch.Tensor, keys: torch.Tensor, *, mask_id: int,
              pool: torch.Tensor, mix: tuple[float, float, float]) -> Corruption:
    """Turn a selection into a Corruption: mask / random / unchanged by ``mix``, targets at selected positions."""
    p_mask, p_rand, p_keep = (check_prob("mix entry", p) for p in mix)
    if abs(p_mask + p_rand + p_keep - 1.0) > 1e-6:
        raise ValueError(f"mix must sum to 1, got {mix}")
    B, L = ids.shape
    role_u = keyed.uniform(keys, L, stream=1)
    pick = keyed.bits(keys, L, stream=2) % len(pool)
    as_mask = selected & (role_u < p_mask)
    as_rand = selected & (role_u >= p_mask) & (role_u < p_mask + p_rand)
    inputs = torch.where(as_mask, torch.full_like(ids, mask_id), ids)
    inputs = torch.where(as_rand, pool.to(ids.device)[pick].to(ids.dtype), inputs)
    targets = torch.where(selected, ids, torch.full_like(ids, IGNORE_INDEX))
    kind = torch.zeros_like(ids, dtype=torch.int8)
    kind[selected] = UNCHANGED
    kind[as_mask] = MASKED
    kind[as_rand] = RANDOM
    return Corruption(inputs, targets, selected, selected.float(), kind)


def random_mask(ids: torch.Tensor, keys: torch.Tensor, *, mask_id: int, vocab_size: int,
                special_ids: Sequence[int], prob: float = 0.15, count: int | torch.Tensor | None = None,
                mix: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> Corruption:
    """BERT masking of ``ids`` [B, L] with per-example ``keys`` [B] (see :func:`keyed.example_keys`).

    ``prob`` selects each eligible token independently (as Hugging Face's collator does); ``count`` instead selects
    exactly that many per row (int or [B] tensor), capped by the number of eligible tokens.
    """
    if ids.dim() != 2 or ids.shape[1] == 0:
        raise ValueError(f"ids must be a non-empty [B, L] tensor, got shape {tuple(ids.shape)}")
    check_prob("prob", prob)
    can = eligible(ids, special_ids)
    u = keyed.uniform(keys, ids.shape[1], stream=0)
    selected = (u < prob) & can if count is None else select_count(can, u, count)
    pool = replacement_pool(vocab_size, special_ids, ids.device)
    return apply_mix(ids, selected, keys, mask_id=mask_id, pool=pool, mix=mix)
