"""MEAP: Mask-Enhanced Autoregressive Prediction (Zhuang et al. 2025, Sec. 3).

MEAP trains a decoder-only model with plain next-token prediction, but a small random fraction of the *input*
tokens is replaced by a mask token first. The targets stay the original next tokens, so the loss is the
ordinary causal-LM loss on the clean sequence while the model must look past the holes. MEAP's reference code
draws one pattern for the whole batch; here every row draws its own, keyed on (seed, epoch, example index).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from masklab.corrupt import keyed
from masklab.corrupt._select import check_prob, select_count
from masklab.corrupt.keyed import Stream
from masklab.corrupt.record import IGNORE_INDEX, MASKED, Corruption
from masklab.corrupt.tokens import check_ids, eligible

__all__ = ["meap_mask"]


def meap_mask(
    ids: torch.Tensor,
    keys: torch.Tensor,
    *,
    mask_id: int,
    special_ids: Sequence[int] = (),
    prob: float = 0.15,
    count: int | torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
) -> Corruption:
    """Replace a ``prob`` fraction (exactly ``round(prob * n)`` of the n eligible tokens, or ``count``) of
    each row of ``ids`` [B, L] with ``mask_id``.

    ``targets`` are the ORIGINAL ids (Hugging Face causal-LM ``labels``: the model shifts them by one), with
    IGNORE_INDEX on padding (``attention_mask == 0``). Special tokens (BOS, pad) are never masked.
    """
    check_ids(ids, keys)
    check_prob("prob", prob)
    real = torch.ones_like(ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    ok = eligible(ids, special_ids) & real
    if count is None:
        count = torch.floor(ok.sum(dim=1).double() * prob + 0.5).long()
    u = keyed.uniform(keys, ids.shape[1], stream=Stream.MEAP_SELECT)
    selected = select_count(ok, u, count)
    inputs = torch.where(selected, torch.full_like(ids, mask_id), ids)
    targets = torch.where(real, ids, torch.full_like(ids, IGNORE_INDEX))
    kind = (selected * MASKED).to(torch.int8)
    return Corruption(inputs, targets, selected, real.float(), kind)
