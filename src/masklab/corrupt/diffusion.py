"""Masked-diffusion noising (MDLM, Sahoo et al. 2024, Eq. 10; LLaDA, Nie et al. 2025, Eq. 3), and MDiff4STR's.

:func:`mdm_noise`: each sequence draws a time t in [eps, 1) and every eligible token is replaced by the mask token
with probability t. The loss weight of a masked position is 1/t, which makes the per-token cross-entropy an upper
bound on the negative log-likelihood (the ELBO of the linear schedule).

:func:`mdiff4str_noise`: MDiff4STR's six noising strategies for the denoising input and its separate token-
replacement ("reflect") input, as OpenOCR's label encoder builds them (see the function). The model and loss are
:mod:`masklab.objectives.mdiff4str`, the six decoders :mod:`masklab.sample.str_decoders`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from masklab.corrupt import keyed
from masklab.corrupt._select import check_prob
from masklab.corrupt.keyed import Stream
from masklab.corrupt.record import IGNORE_INDEX, MASKED, RANDOM, UNCHANGED, Corruption
from masklab.corrupt.tokens import check_ids, eligible

__all__ = ["sample_t", "mdm_noise", "mdiff4str_noise", "MDiff4STRCorruption", "T_SAMPLING", "STRATEGIES"]

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
_ORDERED = (1, 2, 3, 4)  # the strategies that need n > 2 tokens; shorter rows take "random" (as OpenOCR does)


@dataclass
class MDiff4STRCorruption(Corruption):
    """The denoising input (the :class:`Corruption` fields) plus what the MDiff4STR loss needs beside it.

    reflect: the token-replacement ("reflect") input of the same rows: inputs with random ids, targets on every
             eligible position, weights None (a plain mean over them), kind 2 (random id) or 3 (drawn, equal).
    p_mask:  [B] float, the share of a row's eligible tokens that are masked (OpenOCR's ``p_mask``).
    """

    reflect: Corruption | None = None
    p_mask: torch.Tensor | None = None


def mdiff4str_noise(
    ids: torch.Tensor,
    keys: torch.Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids=(),
    pad_id: int | None = None,
    strategies: tuple[str, ...] = STRATEGIES,
    weights: tuple[float, ...] | None = None,
    eps: float = 1e-3,
) -> MDiff4STRCorruption:
    """MDiff4STR's two noised inputs of ``ids`` [B, L] (Masked Diffusion for Scene Text Recognition, Sec. 3.2;
    OpenOCR ``openrec/preprocess/mdiff_label_encode.py``: ``forward_process`` and ``reflect_random_idices``).

    Eligible tokens (not in ``special_ids``; for scene text the characters and the EOS) number n per row. Each
    row draws one strategy (uniform, or by ``weights``) for the denoising input:
      full:          every token is masked.
      left_to_right: a split s ~ U{1..n-1}; tokens from s on are masked (a visible prefix, decoded onwards).
      right_to_left: the same split; the first s tokens are masked.
      block:         r ~ U{2..6} blocks of n // r tokens; a visible prefix of k - 1 whole blocks, the rest masked
                     (k ~ U{2..r}, r one more when n % r != 0; k = 1 when r = 2; blocks of one token fall back to
                     left_to_right or right_to_left with probability 1/2 each).
      cloze:         exactly one uniformly chosen token is masked.
      random:        t ~ U[0, 1), each token masked with probability t; a row left unmasked masks one token.
    The ordered strategies need n > 2 and fall back to "random" on shorter rows, as the reference does.

    The reflect input replaces each eligible token, with probability (1 - eps) t' + eps for its own t' ~ U[0, 1),
    by an id uniform over the whole vocabulary (``randint(0, len(dict) - 1)``: the special ids included); it is
    trained with cross-entropy on every eligible position (a second loss, OpenOCR ``mdiff_decoder.py``).

    ``weights`` of the denoising record are OpenOCR's 1 / (p_mask (n + 1)) on masked tokens, with p_mask the row's
    masked share: summed over tokens and divided by the batch size it is ``forward_train``'s denoising loss.
    Positions holding ``pad_id`` are shown as the mask token in both inputs (the reference pads its noised rows
    with ``<mask>``: at inference every position starts masked, so the model never sees the length).
    """
    check_ids(ids, keys)
    check_prob("eps", eps)
    u = keyed.uniform64(keys, 6, stream=Stream.MDIFF4STR).to(ids.device)  # strategy, t, split, blocks, t', coin
    code = _strategy_codes(u[:, 0], strategies, weights)
    can = eligible(ids, special_ids)
    n = can.sum(dim=1)  # (B,) eligible tokens per row
    rank = can.long().cumsum(dim=1) - 1  # (B, L) ordinal among eligible tokens
    code = torch.where((n <= 2) & torch.isin(code, torch.tensor(_ORDERED, device=ids.device)), 5, code)
    masked = _strategy_mask(code, u, n, rank, can, keyed.uniform(keys, ids.shape[1], stream=Stream.DIFFUSION_MASK))
    m = masked.sum(dim=1)
    p_mask = m / n.clamp(min=1)
    w = masked / (p_mask * (n + 1)).clamp(min=1e-12)[:, None]  # OpenOCR: CE / p_mask / (length + 1)
    show_pad = (ids == pad_id) if pad_id is not None else torch.zeros_like(can)
    inputs = torch.where(masked | show_pad, torch.full_like(ids, mask_id), ids)
    targets = torch.where(masked, ids, torch.full_like(ids, IGNORE_INDEX))
    reflect = _reflect(ids, keys, can, show_pad, u[:, 4], mask_id=mask_id, vocab_size=vocab_size, eps=eps)
    kind = (masked * MASKED).to(torch.int8)
    return MDiff4STRCorruption(inputs, targets, masked, w.float(), kind, reflect=reflect, p_mask=p_mask.float())


def _strategy_codes(u0: torch.Tensor, strategies, weights) -> torch.Tensor:
    """[B] index into :data:`STRATEGIES` of each row's strategy, from the rows' uniforms ``u0`` [B]."""
    bad = [s for s in strategies if s not in STRATEGIES]
    if bad or not strategies:
        raise ValueError(f"unknown MDiff4STR strategy {bad or strategies!r}; choose from {STRATEGIES}")
    w = torch.ones(len(strategies), dtype=torch.float64) if weights is None else torch.as_tensor(weights).double()
    if len(w) != len(strategies) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be {len(strategies)} non-negative numbers with a positive sum, got {weights}")
    device = u0.device
    cdf = (w / w.sum()).cumsum(0).to(device)
    which = torch.searchsorted(cdf, u0.contiguous(), right=True).clamp(max=len(strategies) - 1)
    return torch.tensor([STRATEGIES.index(s) for s in strategies], device=device)[which]


def _strategy_mask(code, u, n, rank, can, u_tok) -> torch.Tensor:
    """[B, L] bool masked positions of each row under its strategy ``code`` [B] (see :func:`mdiff4str_noise`).
    ``u`` [B, 6] float64 per-row draws, ``rank`` [B, L] ordinal of each eligible token, ``u_tok`` [B, L]."""
    nn_ = n[:, None]
    split = (1 + torch.floor(u[:, 2] * (n - 1)).long())[:, None]  # U{1..n-1}
    # block (OpenOCR rand_choice == 3): r blocks of n // r tokens; a prefix of k - 1 whole blocks stays visible
    r = torch.minimum(2 + torch.floor(u[:, 3] * 5).long(), n)  # U{2..6}, at most n
    size = n // r.clamp(min=1)
    r2 = r + (n % r.clamp(min=1) != 0).long()
    k = torch.where(r2 == 2, 1, 2 + torch.floor(u[:, 2] * (r2 - 1)).long())  # U{2..r2}, or 1 when r2 == 2
    block = rank >= (size * (k - 1))[:, None]
    one_token_blocks = (size == 1)[:, None]
    coin = (u[:, 5] < 0.5)[:, None]
    block = torch.where(one_token_blocks, torch.where(coin, rank >= split, rank < split), block)
    # random: t ~ U[0, 1) per token; a row with nothing masked masks one uniformly chosen token
    rand = u_tok.double() < u[:, 1:2]
    rand = rand & can
    rand = rand | ((rank == torch.floor(u[:, 2] * n).long()[:, None]) & ~rand.any(1, keepdim=True))
    by_code = (can, rank >= split, rank < split, block, rank == torch.floor(u[:, 2:3] * nn_).long(), rand)
    masked = torch.zeros_like(can)
    for c, sel in enumerate(by_code):
        masked = torch.where((code == c)[:, None], sel, masked)
    return masked & can


def _reflect(ids, keys, can, show_pad, t, *, mask_id: int, vocab_size: int, eps: float) -> Corruption:
    """The reflect input: each eligible token becomes a uniform id of the vocabulary with probability
    (1 - eps) t + eps (OpenOCR ``reflect_random_idices``); targets are every eligible token."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive int, got {vocab_size!r}")
    rate = ((1 - eps) * t + eps)[:, None]  # (B, 1)
    drawn = can & (keyed.uniform(keys, ids.shape[1], stream=Stream.MDIFF4STR_REPLACE).double() < rate)
    pick = (keyed.bits(keys, ids.shape[1], Stream.MDIFF4STR_PICK) % vocab_size).to(ids.dtype)
    inputs = torch.where(drawn, pick, ids)
    inputs = torch.where(show_pad, torch.full_like(ids, mask_id), inputs)
    targets = torch.where(can, ids, torch.full_like(ids, IGNORE_INDEX))
    kind = torch.where(drawn, torch.where(pick != ids, RANDOM, UNCHANGED), 0).to(torch.int8)
    return Corruption(inputs, targets, can, None, kind)
