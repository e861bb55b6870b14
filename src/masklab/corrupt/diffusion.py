"""Masked-diffusion noising (MDLM, Sahoo et al. 2024, Eq. 10; LLaDA, Nie et al. 2025, Eq. 3).

Each sequence draws a time t in [eps, 1) and every eligible token is replaced by the mask token with probability t.
The loss weight of a masked position is 1/t, which makes the per-token cross-entropy an upper bound on the
negative log-likelihood (the ELBO of the linear schedule).
"""

from __future__ import annotations

import torch

from masklab.corrupt import keyed
from masklab.corrupt.record import IGNORE_INDEX, MASKED, Corruption
from masklab.corrupt.tokens import eligible

__all__ = ["sample_t", "mdm_noise", "T_SAMPLING"]

T_SAMPLING = ("iid", "antithetic", "stratified")


def sample_t(keys: torch.Tensor, *, eps: float = 1e-3, mode: str = "iid", position: torch.Tensor | None = None,
             batch_size: int | None = None, batch_key: torch.Tensor | None = None) -> torch.Tensor:
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
        u = keyed.uniform(keys, 1, stream=7, dtype=torch.float64)[:, 0]
    else:
        if position is None or batch_size is None or batch_key is None:
            raise ValueError(f"t sampling {mode!r} needs the global batch position, size and key")
        if mode == "antithetic":
            pair = torch.div(position, 2, rounding_mode="floor")
            u = keyed.uniform(keyed.derive(batch_key.reshape(1).expand_as(pair), pair), 1, 7, torch.float64)[:, 0]
            u = torch.where(position % 2 == 1, 1.0 - u, u)
        else:
            u0 = keyed.uniform(batch_key.reshape(1), 1, stream=7, dtype=torch.float64)[0, 0]
            u = torch.remainder(u0 + position.double() / batch_size, 1.0)
    return (eps + (1.0 - eps) * u).float()


def mdm_noise(ids: torch.Tensor, keys: torch.Tensor, t: torch.Tensor, *, mask_id: int,
              special_ids=()) -> Corruption:
    """Mask each eligible token of ``ids`` [B, L] with probability ``t`` [B]; weights are 1/t on masked tokens."""
    can = eligible(ids, special_ids)
    u = keyed.uniform(keys, ids.shape[1], stream=8)
    masked = (u < t[:, None]) & can
    inputs = torch.where(masked, torch.full_like(ids, mask_id), ids)
    targets = torch.where(masked, ids, torch.full_like(ids, IGNORE_INDEX))
    weights = masked.float() / t[:, None]
    return Corruption(inputs, targets, masked, weights, (masked * MASKED).to(torch.int8))
