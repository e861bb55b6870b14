"""Score-guided masking: mask what a score points at (Ask2Mask, Baskar et al. 2022; HPM, Wang et al. 2023).

Ask2Mask (Sec. 3) scores every position with an external model and masks positions chosen by the score instead
of uniformly; Hard Patches Mining (HPM, Sec. 3.3) predicts a per-token loss and masks the hardest tokens,
moving from random to guided masking with an easy-to-hard schedule (the guided share grows linearly during
training).

Given scores [B, L], each row masks exactly ``round(prob * n)`` eligible tokens (or ``count``): ``guided`` of
them chosen by score, the rest uniformly among the others. ``mode``: ``top`` (highest scores), ``bottom``
(lowest) or ``proportional`` (sampled without replacement with probability proportional to ``score **
(1/temperature)``, by keyed Gumbel-top-k, Kool et al. 2019).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from masklab.corrupt import keyed
from masklab.corrupt._select import check_prob, select_count
from masklab.corrupt.keyed import Stream
from masklab.corrupt.record import Corruption
from masklab.corrupt.tokens import apply_mix, check_ids, eligible, replacement_pool

__all__ = ["score_guided_mask", "easy_to_hard", "MODES"]

MODES = ("top", "bottom", "proportional")


def easy_to_hard(progress: float, *, start: float = 0.0, end: float = 1.0) -> float:
    """Guided share at training ``progress`` in [0, 1]: linear from ``start`` to ``end`` (HPM, Sec. 3.3)."""
    check_prob("progress", progress)
    return float(check_prob("start", start) + (check_prob("end", end) - start) * progress)


def score_guided_mask(
    ids: torch.Tensor,
    keys: torch.Tensor,
    scores: torch.Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: Sequence[int],
    prob: float = 0.15,
    count: int | torch.Tensor | None = None,
    mode: str = "top",
    guided: float = 1.0,
    temperature: float = 1.0,
    mix: tuple[float, float, float] = (0.8, 0.1, 0.1),
    can: torch.Tensor | None = None,
) -> Corruption:
    """Mask ``ids`` [B, L] guided by ``scores`` [B, L] (higher = more likely masked for top/proportional)."""
    check_ids(ids, keys)
    check_prob("prob", prob)
    check_prob("guided", guided)
    if mode not in MODES:
        raise ValueError(f"unknown guided mode {mode!r}; choose from {MODES}")
    if scores.shape != ids.shape:
        raise ValueError(f"scores shape {tuple(scores.shape)} does not match ids shape {tuple(ids.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    ok = eligible(ids, special_ids) if can is None else eligible(ids, special_ids) & can
    n = ok.sum(dim=1)
    k = (
        torch.floor(n.double() * prob + 0.5).long()
        if count is None
        else torch.minimum(torch.as_tensor(count, device=ids.device).long().expand(len(n)), n)
    )
    kg = torch.floor(k.double() * guided + 0.5).long()
    s = scores.detach().double()
    if mode == "proportional":
        if (s[ok] < 0).any():
            raise ValueError("proportional guided masking needs scores >= 0")
        noise = keyed.uniform64(keys, ids.shape[1], stream=Stream.GUIDED_GUMBEL)
        g = -torch.log(-torch.log(noise.clamp(1e-300, 1 - 1e-16)))
        key = -(torch.log(s) / temperature + g)  # smallest key = largest perturbed log-score
    else:
        key = -s if mode == "top" else s
    key = torch.where(ok & torch.isfinite(key), key, torch.full_like(key, torch.inf))
    rank = key.argsort(dim=1, stable=True).argsort(dim=1, stable=True)
    chosen = (rank < kg[:, None]) & ok
    u_rest = keyed.uniform(keys, ids.shape[1], stream=Stream.GUIDED_REST)
    rest = select_count(ok & ~chosen, u_rest, k - chosen.sum(dim=1))
    return apply_mix(
        ids,
        chosen | rest,
        keys,
        mask_id=mask_id,
        pool=replacement_pool(vocab_size, special_ids, ids.device),
        mix=mix,
    )
