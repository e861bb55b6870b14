"""MEAP: Mask-Enhanced Autoregressive Prediction (Zhuang et al. 2025, Sec. 3).

MEAP trains a decoder-only model with plain next-token prediction, but a small random fraction of the *input*
tokens is replaced by a mask token first. The targets stay the original next tokens, so the loss is the
ordinary causal-LM loss on the clean sequence while the model must look past the holes. MEAP's reference code
draws one pattern for the whole batch; here every row draws its own, keyed on (seed, epoch, example index).

:func:`meap_sft` is MEAP's fine-tuning recipe (Sec. 3, "MEAP for fine-tuning"; the reference's
``MEAP-SFT/MEAP-SFT.py``, ``preprocess_function``): every prompt/response example is duplicated. The original
is trained with next-token prediction on its response (and the EOS that ends it); in the copy ``max(1,
floor(ratio * n))`` of the n response tokens (10% in the paper) become the mask token, and the copy's loss is
taken at those masked positions only, predicting each masked token's original identity as the next token. Only
responses longer than ``min_response`` tokens (50 in the reference) get a copy with a loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from masklab.corrupt import keyed
from masklab.corrupt._select import check_prob, select_count
from masklab.corrupt.keyed import Stream
from masklab.corrupt.record import IGNORE_INDEX, MASKED, Corruption
from masklab.corrupt.tokens import check_ids, eligible

__all__ = ["meap_mask", "meap_sft", "response_span"]


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


def response_span(ids: torch.Tensor, prompt_len: torch.Tensor, eos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(response [B, L] bool, end [B]) of SFT rows ``[prompt | response | EOS ...]``: the response runs from
    ``prompt_len`` to the first EOS after it (or to the end of a row cut before its EOS)."""
    B, L = ids.shape
    pos = torch.arange(L, device=ids.device).expand(B, L)
    after = pos >= prompt_len[:, None]
    eos = after & (ids == eos_id)
    end = torch.where(eos.any(1), torch.where(eos, pos, L).amin(1), torch.full_like(prompt_len, L))
    return after & (pos < end[:, None]), end


def meap_sft(
    ids: torch.Tensor,
    keys: torch.Tensor,
    prompt_len: torch.Tensor,
    *,
    mask_id: int,
    eos_id: int,
    ratio: float = 0.1,
    min_response: int = 50,
) -> Corruption:
    """MEAP-SFT rows ``[2B, L]`` of SFT rows ``ids`` [B, L] (see the module docstring): rows ``0..B-1`` the
    originals, rows ``B..2B-1`` their masked copies.

    ``targets`` are Hugging Face causal-LM labels (the model shifts them by one): an original's response tokens
    and its EOS; a copy's original tokens at its masked positions only (when its response has more than
    ``min_response`` tokens). ``mask`` marks the masked positions of the copies.
    """
    check_ids(ids, keys)
    check_prob("ratio", ratio)
    if min_response < 0:
        raise ValueError(f"min_response must be >= 0, got {min_response}")
    response, end = response_span(ids, prompt_len, eos_id)
    n = response.sum(1)
    count = torch.floor(n.double() * ratio).long().clamp(min=1)  # max(1, int(n * ratio)), as the reference
    u = keyed.uniform(keys, ids.shape[1], stream=Stream.MEAP_SELECT)
    selected = select_count(response, u, count) & (n > min_response)[:, None]
    pos = torch.arange(ids.shape[1], device=ids.device)
    supervised = response | (pos == end[:, None])  # the response and the EOS that ends it
    original = torch.where(supervised, ids, torch.full_like(ids, IGNORE_INDEX))
    copy_in = torch.where(selected, torch.full_like(ids, mask_id), ids)
    copy_y = torch.where(selected, ids, torch.full_like(ids, IGNORE_INDEX))
    none = torch.zeros_like(selected)
    mask = torch.cat([none, selected])
    return Corruption(
        torch.cat([ids, copy_in]), torch.cat([original, copy_y]), mask, None, (mask * MASKED).to(torch.int8)
    )
