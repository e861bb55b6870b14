"""N:M, unstructured and block keep-masks from a weight and an optional score.

N:M semi-structured sparsity (Mishra et al., 2021, "Accelerating Sparse Deep Neural Networks", the Ampere 2:4
format; Zhou et al., 2021, "Learning N:M Fine-grained Structured Sparse Neural Networks From Scratch"): every
group of ``m`` consecutive weights along the *input* dimension keeps exactly ``n``. For an ``nn.Linear``
weight ``[out, in]`` the input dimension is the last one; weights with more than two dimensions (convolutions
``[out, in, kh, kw]``) are grouped along the flattened trailing dimensions ``(shape[0], -1)``.

A mask is a bool tensor of the weight's shape; ``True`` means the weight lives. Scores default to ``|W|``
(magnitude); pass Wanda or any other score of the same shape to choose differently. Ties are broken by
``torch.topk``, so a mask is a pure function of the scores.
"""

from __future__ import annotations

import math
from functools import lru_cache
from itertools import combinations

import torch

__all__ = ["nm_mask", "unstructured_mask", "block_mask", "nm_patterns", "is_nm", "sparsity"]


def _check_nm(n: int, m: int) -> None:
    if not (isinstance(n, int) and isinstance(m, int)) or m < 1 or n < 0:
        raise ValueError(f"n and m must be integers with m >= 1 and n >= 0, got n={n!r}, m={m!r}")
    if n >= m:
        raise ValueError(f"n must be smaller than m for N:M sparsity, got n={n}, m={m}")


def _scores_for(weight: torch.Tensor, scores: torch.Tensor | None) -> torch.Tensor:
    if weight.dim() < 2:
        raise ValueError(f"N:M masks need a weight with >= 2 dimensions, got shape {tuple(weight.shape)}")
    if scores is None:
        return weight.detach().abs()
    if scores.shape != weight.shape:
        raise ValueError(f"scores shape {tuple(scores.shape)} does not match weight shape {tuple(weight.shape)}")
    return scores.detach()


def nm_mask(
    weight: torch.Tensor, n: int = 2, m: int = 4, scores: torch.Tensor | None = None, pad: bool = False
) -> torch.Tensor:
    """Keep the ``n`` highest-scoring of every ``m`` consecutive weights along the input dimension.

    If ``m`` does not divide the input dimension, this raises ``ValueError`` unless ``pad=True``. With
    ``pad=True`` the last, partial group is padded with virtual weights of score ``-inf``: it keeps
    ``min(n, r)`` of its ``r`` real weights, exactly as if the row had been zero-padded to a multiple of ``m``
    and the padding pruned first (that is what a 2:4 kernel sees after padding the matrix).
    """
    _check_nm(n, m)
    s = _scores_for(weight, scores)
    rows = s.shape[0]
    flat = s.reshape(rows, -1).float()  # (R, C)
    cols = flat.shape[1]
    rem = cols % m
    if rem:
        if not pad:
            raise ValueError(f"input dimension {cols} is not divisible by m={m}; pass pad=True to pad the last group")
        flat = torch.nn.functional.pad(flat, (0, m - rem), value=float("-inf"))
    groups = flat.reshape(rows, -1, m)  # (R, G, m)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    if n > 0:
        keep.scatter_(-1, groups.topk(n, dim=-1).indices, True)
    return keep.reshape(rows, -1)[:, :cols].reshape(weight.shape)


def unstructured_mask(
    weight: torch.Tensor, sparsity: float, scores: torch.Tensor | None = None, per_row: bool = False
) -> torch.Tensor:
    """Prune the lowest-scoring fraction ``sparsity`` of the weights (whole tensor, or each output row).

    ``per_row=True`` compares weights only within an output row, as Wanda does (Sun et al., 2024, Sec. 3).
    The number pruned is ``floor(sparsity * size)`` of the compared set.
    """
    if not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    s = _scores_for(weight, scores).float()
    flat = s.reshape(s.shape[0], -1) if per_row else s.reshape(1, -1)
    k = int(math.floor(float(sparsity) * flat.shape[1]))
    keep = torch.ones_like(flat, dtype=torch.bool)
    if k:
        keep.scatter_(-1, flat.topk(k, dim=-1, largest=False).indices, False)
    return keep.reshape(weight.shape)


def block_mask(
    weight: torch.Tensor, sparsity: float, block: tuple[int, int] = (4, 4), scores: torch.Tensor | None = None
) -> torch.Tensor:
    """Prune whole ``block = (bh, bw)`` tiles of a 2-D weight: the fraction ``sparsity`` of tiles with the
    lowest summed score. Both weight dimensions must be divisible by the block's."""
    if weight.dim() != 2:
        raise ValueError(f"block masks need a 2-D weight, got shape {tuple(weight.shape)}")
    bh, bw = block
    R, C = weight.shape
    if bh < 1 or bw < 1 or R % bh or C % bw:
        raise ValueError(f"block {block} does not tile a weight of shape {(R, C)}")
    s = _scores_for(weight, scores).float()
    tiles = s.reshape(R // bh, bh, C // bw, bw).sum(dim=(1, 3))  # (R/bh, C/bw)
    keep = unstructured_mask(tiles, sparsity, scores=tiles)
    return keep.repeat_interleave(bh, 0).repeat_interleave(bw, 1)


@lru_cache(maxsize=32)
def _patterns(n: int, m: int) -> tuple[tuple[bool, ...], ...]:
    return tuple(tuple(j in c for j in range(m)) for c in combinations(range(m), n))


def nm_patterns(n: int = 2, m: int = 4, device=None) -> torch.Tensor:
    """All C(m, n) candidate N:M patterns as a float tensor [C(m, n), m] of 0/1 (MaskLLM's set S, Eq. 2)."""
    _check_nm(n, m)
    return torch.tensor(_patterns(n, m), dtype=torch.float32, device=device)


def is_nm(mask: torch.Tensor, n: int = 2, m: int = 4, exact: bool = True) -> bool:
    """Whether every group of ``m`` along the input dimension keeps exactly (``exact=False``: at most) n."""
    flat = mask.reshape(mask.shape[0], -1)
    if flat.shape[1] % m:
        return False
    per_group = flat.reshape(flat.shape[0], -1, m).sum(-1)
    return bool((per_group == n).all() if exact else (per_group <= n).all())


def sparsity(mask: torch.Tensor) -> float:
    """Fraction of pruned entries (``False``) in a keep-mask."""
    return 1.0 - mask.float().mean().item()
