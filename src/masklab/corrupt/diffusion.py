"""Masked-diffusion noising (MDLM, Sahoo et al. 2024, Eq. 10; LLaDA, Nie et al. 2025, Eq. 3).

Each sequence draws a time t in [eps, 1) and every eligible token is replaced by the mask token with
probability t. The loss weight of a masked position is 1/t, which makes the per-token cross-entropy an upper
bound on the negative log-likelihood (the ELBO of the linear schedule).
"""

from __future__ import annotations

import torch

from masklab.corrupt import keyed
from masklab.corrupt._select import check_prob
from masklab.corrupt.keyed import Stream
from masklab.corrupt.record import IGNORE_INDEX, MASKED, RANDOM, Corruption
from masklab.corrupt.tokens import check_ids, eligible, replacement_pool

__all__ = ["sample_t", "mdm_noise", "mdiff4str_noise", "T_SAMPLING", "STRATEGIES"]

T_SAMPLING = ("iid", "antithetic", "stratified")


def sample_t(
    keys: torch.Tensor,
    *,
    eps: float = 1e-3,
    mode: str = "iid",
    position: torch.Tensor | None = None,
    batch_size: int | None = None,
    batch_key: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sequence time t [B] in [eps, 1).

    iid:        t from the example's own key only.
    antithetic: examples at positions 2k and 2k+1 of the global batch get u and 1 - u.
    stratified: example at global position i gets (u0 + i / N) mod 1 (Kingma et al. 2021), one u0 per batch.
    The coupled modes need ``position`` (index in the global batch), ``batch_size`` N and ``batch_key``.
    """
    if mode not in T_SAMPLING:
        raise ValueError(f"unknown t sampling {mode!r}; choose from {T_SAMPLING}")
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"eps must be in [0, 1), got {eps}")
    if mode == "iid":
        u = keyed.uniform(keys, 1, stream=Stream.DIFFUSION_T, dtype=torch.float64)[:, 0]
    else:
        if position is None or batch_size is None or batch_key is None:
            raise ValueError(f"t sampling {mode!r} needs the global batch position, size and key")
        if mode == "antithetic":
            pair = torch.div(position, 2, rounding_mode="floor")
            pair_keys = keyed.derive(batch_key.reshape(1).expand_as(pair), pair)
            u = keyed.uniform(pair_keys, 1, Stream.DIFFUSION_T, torch.float64)[:, 0]
            u = torch.where(position % 2 == 1, 1.0 - u, u)
        else:
            u0 = keyed.uniform(batch_key.reshape(1), 1, stream=Stream.DIFFUSION_T, dtype=torch.float64)[0, 0]
            u = torch.remainder(u0 + position.double() / batch_size, 1.0)
    return (eps + (1.0 - eps) * u).float()


def mdm_noise(
    ids: torch.Tensor,
    keys: torch.Tensor,
    t: torch.Tensor,
    *,
    mask_id: int,
    special_ids=(),
    can: torch.Tensor | None = None,
) -> Corruption:
    """Mask each eligible token of ``ids`` [B, L] with probability ``t`` [B]; weights are 1/t on masked
    tokens. ``can`` [B, L] bool further restricts the eligible positions (as in the other corruptions).
    ``t`` must lie in (0, 1]: NaN or a value outside is a ValueError."""
    t = torch.as_tensor(t, dtype=torch.float32, device=ids.device).reshape(-1)
    if t.numel() == 1:
        t = t.expand(ids.shape[0])
    if t.numel() != ids.shape[0]:
        raise ValueError(f"t must hold one time per row: {ids.shape[0]} rows, got {t.numel()} values")
    if not bool(((t > 0) & (t <= 1)).all()):  # NaN fails both compares
        raise ValueError(f"t must be in (0, 1] for every row, got {t.tolist()[:8]}")
    ok = eligible(ids, special_ids)
    if can is not None:
        ok = ok & can.bool()
    u = keyed.uniform(keys, ids.shape[1], stream=Stream.DIFFUSION_MASK)
    masked = (u < t[:, None]) & ok
    inputs = torch.where(masked, torch.full_like(ids, mask_id), ids)
    targets = torch.where(masked, ids, torch.full_like(ids, IGNORE_INDEX))
    weights = masked.float() / t[:, None]
    return Corruption(inputs, targets, masked, weights, (masked * MASKED).to(torch.int8))


# ------------------------------------------------------------------------------------------------ MDiff4STR

STRATEGIES = ("full", "left_to_right", "right_to_left", "block", "cloze", "random")


def mdiff4str_noise(
    ids: torch.Tensor,
    keys: torch.Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids=(),
    strategies: tuple[str, ...] = STRATEGIES,
    weights: tuple[float, ...] | None = None,
    replace_prob: float = 0.0,
    eps: float = 1e-3,
) -> Corruption:
    """MDiff4STR noising (Masked Diffusion for Scene Text Recognition, Sec. 3.2): each row draws one strategy.

    With n eligible tokens and a per-row t ~ U[eps, 1) (``Stream.MDIFF4STR``):
      full:          every token is masked.
      left_to_right: the last ceil(t n) tokens are masked (the visible prefix is decoded left to right).
      right_to_left: the first ceil(t n) tokens are masked.
      block:         one contiguous block of ceil(t n) tokens at a uniform offset is masked.
      cloze:         exactly one uniformly chosen token is masked.
      random:        each token is masked independently with probability t (the MDM forward process).
    Token-replacement noise: each still-visible eligible token becomes a uniform random non-special token with
    probability ``replace_prob`` and is also a target, so the model learns to correct wrong context.
    ``weights``: probability of each strategy (uniform by default). kind: 1 masked, 2 replaced.
    """
    check_ids(ids, keys)
    check_prob("replace_prob", replace_prob)
    bad = [s for s in strategies if s not in STRATEGIES]
    if bad or not strategies:
        raise ValueError(f"unknown MDiff4STR strategy {bad or strategies!r}; choose from {STRATEGIES}")
    w = (
        torch.ones(len(strategies), dtype=torch.float64)
        if weights is None
        else torch.as_tensor(weights, dtype=torch.float64)
    )
    if len(w) != len(strategies) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be {len(strategies)} non-negative numbers with a positive sum, got {weights}")
    dev = ids.device
    B, L = ids.shape
    can = eligible(ids, special_ids)
    n = can.sum(dim=1)
    rank = can.long().cumsum(dim=1) - 1  # (B, L) ordinal among eligible tokens
    u = keyed.uniform64(keys, 3, stream=Stream.MDIFF4STR)  # strategy, t, offset
    cdf = (w / w.sum()).cumsum(0).to(dev)
    which = torch.searchsorted(cdf, u[:, 0].contiguous(), right=True).clamp(max=len(strategies) - 1)
    code = torch.tensor([STRATEGIES.index(s) for s in strategies], device=dev)[which]  # (B,)
    t = eps + (1 - eps) * u[:, 1]
    m = torch.ceil(t * n).long().clamp(max=n)  # (B,) masked count for the ordered strategies
    off = torch.floor(u[:, 2] * (n - m + 1)).long()
    cloze_at = torch.floor(u[:, 2] * n).long()
    r = rank
    col = {
        0: torch.ones_like(can),
        1: r >= (n - m)[:, None],
        2: r < m[:, None],
        3: (r >= off[:, None]) & (r < (off + m)[:, None]),
        4: r == cloze_at[:, None],
        5: keyed.uniform(keys, L, stream=Stream.DIFFUSION_MASK).double() < t[:, None],
    }
    masked = torch.zeros_like(can)
    for c, sel in col.items():
        masked = torch.where((code == c)[:, None], sel, masked)
    masked = masked & can
    inputs = torch.where(masked, torch.full_like(ids, mask_id), ids)
    replaced = torch.zeros_like(can)
    if replace_prob > 0:
        replaced = can & ~masked & (keyed.uniform(keys, L, stream=Stream.MDIFF4STR_REPLACE) < replace_prob)
        pool = replacement_pool(vocab_size, special_ids, dev)
        pick = pool[keyed.bits(keys, L, Stream.MDIFF4STR_PICK) % len(pool)].to(ids.dtype)
        inputs = torch.where(replaced, pick, inputs)
    target_on = masked | replaced
    targets = torch.where(target_on, ids, torch.full_like(ids, IGNORE_INDEX))
    kind = (masked * MASKED + replaced * RANDOM).to(torch.int8)
    return Corruption(inputs, targets, target_on, target_on.float(), kind)
