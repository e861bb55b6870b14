"""Span masking (SpanBERT, Joshi et al. 2020, Sec. 3.1), vectorized over the batch.

SpanBERT masks contiguous spans of whole words until 15% of the sequence is masked. Span lengths (in words)
follow a geometric distribution l ~ Geo(p=0.2) clipped at l_max=10 (truncated and renormalised, mean 3.8), and
the 80/10/10 replacement is decided per span, not per token.

masklab's budget is exact: a row with W eligible words masks exactly ``round(prob * W)`` words (or ``count``).
Span lengths are drawn until they reach the budget and the last span is cut to fit. The spans are placed by a
uniform stars-and-bars draw: with S spans, K masked words and gap g there are F = W - K - (S-1) g free words,
and choosing S distinct slots out of F + S places every span at once, with no overlap and at least g free
words between spans (adjacent spans may touch when g = 0, as in SpanBERT's sampler). When the gap cannot fit S
spans, the last spans are merged into one (which may then exceed ``high``): the budget and the gap always
hold. With ``no_overlap=False`` every span picks its start independently and the union is masked (the budget
is then an upper bound). No Python loop over rows or spans.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from masklab.corrupt import keyed
from masklab.corrupt.record import Corruption
from masklab.corrupt.tokens import (
    apply_mix,
    check_ids,
    check_prob,
    eligible,
    replacement_pool,
    word_index,
    word_starts,
)

__all__ = ["span_mask", "length_table", "LENGTHS"]

LENGTHS = ("geometric", "poisson", "uniform", "fixed")


def length_table(
    dist: str = "geometric", *, p: float = 0.2, lam: float = 3.0, low: int = 1, high: int = 10
) -> torch.Tensor:
    """Probabilities [high + 1] of span lengths 0..high (0 has probability 0), float64.

    geometric: P(l) ∝ p (1-p)^(l-1) on [low, high] (SpanBERT: p=0.2, high=10).
    poisson:   P(l) ∝ lam^l e^-lam / l! on [low, high] (BART's lambda=3, without zero-length spans).
    uniform:   equal on [low, high].   fixed: all mass on ``high``.
    """
    if dist not in LENGTHS:
        raise ValueError(f"unknown span length distribution {dist!r}; choose from {LENGTHS}")
    if not 1 <= low <= high:
        raise ValueError(f"span lengths need 1 <= low <= high, got low={low}, high={high}")
    ell = torch.arange(high + 1, dtype=torch.float64)
    if dist == "geometric":
        if not 0.0 < p <= 1.0:
            raise ValueError(f"geometric p must be in (0, 1], got {p}")
        w = p * (1 - p) ** (ell - 1)
    elif dist == "poisson":
        if lam <= 0:
            raise ValueError(f"poisson lam must be > 0, got {lam}")
        w = torch.exp(ell * math.log(lam) - lam - torch.lgamma(ell + 1))
    elif dist == "uniform":
        w = torch.ones_like(ell)
    else:
        w = (ell == high).double()
    w = torch.where((ell >= low) | (torch.tensor(dist == "fixed")), w, torch.zeros_like(w))
    w[0] = 0.0
    return w / w.sum()


def span_mask(
    ids: torch.Tensor,
    keys: torch.Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: Sequence[int],
    word_ids: torch.Tensor | None = None,
    prob: float = 0.15,
    count: int | torch.Tensor | None = None,
    lengths: str | torch.Tensor = "geometric",
    p: float = 0.2,
    lam: float = 3.0,
    low: int = 1,
    high: int = 10,
    no_overlap: bool = True,
    min_gap: int = 0,
    mix: tuple[float, float, float] = (0.8, 0.1, 0.1),
    per_span_mix: bool = True,
    can: torch.Tensor | None = None,
) -> Corruption:
    """SpanBERT masking of ``ids`` [B, L] with per-example ``keys`` [B].

    ``word_ids`` [B, L] (-1 outside words) makes span lengths count words; without it every token is a word.
    ``lengths`` names a distribution for :func:`length_table` or gives the table itself. Budget: exactly
    ``round(prob * W)`` words per row (W eligible words), or ``count`` (capped at W).
    """
    check_ids(ids, keys)
    check_prob("prob", prob)
    if min_gap < 0:
        raise ValueError(f"min_gap must be >= 0, got {min_gap}")
    dev = ids.device
    B, L = ids.shape
    ok = eligible(ids, special_ids)
    if word_ids is not None:
        if word_ids.shape != ids.shape:
            raise ValueError(f"word_ids shape {tuple(word_ids.shape)} does not match ids shape {tuple(ids.shape)}")
        ok = ok & (word_ids >= 0)
    if can is not None:
        ok = ok & can
    starts = word_starts(word_ids, ok) if word_ids is not None else ok
    widx = word_index(starts, ok)  # (B, L) word ordinal of each token, -1 outside words
    W = starts.sum(dim=1)  # (B,) eligible words
    if count is None:
        K = torch.floor(W.double() * prob + 0.5).long()
    else:
        K = torch.minimum(torch.as_tensor(count, device=dev).long().expand(B), W)
    table = length_table(lengths, p=p, lam=lam, low=low, high=high) if isinstance(lengths, str) else lengths
    cdf = table.double().cumsum(0).to(dev)
    cdf[-1] = 1.0

    smax = max(int(K.max()), 1) if B else 1
    # (B, S) span lengths in words; spans whose offset is past the budget are inactive, the last is cut to fit
    ell = torch.searchsorted(cdf, keyed.uniform64(keys, smax, stream=20), right=True).clamp(min=1)
    before = ell.cumsum(dim=1) - ell
    active = before < K[:, None]
    ell = torch.where(active, torch.minimum(ell, K[:, None] - before), torch.zeros_like(ell))
    S = active.sum(dim=1)
    # shuffle active spans so the cut span is not always last
    order = torch.where(active, keyed.uniform(keys, smax, stream=21), torch.full(ell.shape, 2.0, device=dev))
    ell = ell.gather(1, order.argsort(dim=1, stable=True))

    wmax = max(int(W.max()), 1) if B else 1
    if no_overlap:
        if min_gap > 0:  # too many spans for the gap: merge the last ones so every gap holds
            fit = torch.div(W - K, min_gap, rounding_mode="floor") + 1
            S_new = torch.minimum(S, fit.clamp(min=1))
            i = torch.arange(smax, device=dev)
            tail = torch.where(i >= (S_new - 1)[:, None], ell, torch.zeros_like(ell)).sum(dim=1, keepdim=True)
            ell = torch.where(i < (S_new - 1)[:, None], ell, torch.where(i == (S_new - 1)[:, None], tail, 0))
            S = torch.where(S > 0, S_new, S)
        g = torch.full_like(S, min_gap)
        free = W - K - (S - 1).clamp(min=0) * g  # (B,) free words to spread over S + 1 bins
        slots = free + S
        # choose S distinct slots out of free + S, in increasing order (stars and bars)
        u = keyed.uniform(keys, wmax + 1, stream=22)
        pos = torch.arange(wmax + 1, device=dev)
        u = torch.where(pos[None] < slots[:, None], u, torch.full_like(u, 2.0))
        rank = u.argsort(dim=1, stable=True).argsort(dim=1, stable=True)
        chosen = rank < S[:, None]
        which = (chosen.long().cumsum(dim=1) - 1).clamp(min=0)
        which = torch.where(chosen, which, torch.full_like(which, smax))
        c = torch.zeros(B, smax + 1, dtype=torch.long, device=dev).scatter_(1, which, pos.expand(B, -1))[:, :smax]
        i = torch.arange(smax, device=dev)
        start = c - i + (ell.cumsum(dim=1) - ell) + i * g[:, None]
    else:
        u = keyed.uniform64(keys, smax, stream=22)
        start = torch.floor(u * (W[:, None] - ell + 1).double()).long()
    start = torch.where(ell > 0, start, torch.full_like(start, wmax))
    # difference array over word ordinals: +1 at each span start, -1 after its end
    diff = torch.zeros(B, wmax + 2, dtype=torch.long, device=dev)
    diff.scatter_add_(1, start.clamp(max=wmax), (ell > 0).long())
    diff.scatter_add_(1, (start + ell).clamp(max=wmax + 1), -(ell > 0).long())
    cover = diff.cumsum(dim=1)[:, :wmax]  # (B, W) spans covering each word
    span_no = torch.zeros(B, wmax + 2, dtype=torch.long, device=dev)
    span_no.scatter_add_(1, start.clamp(max=wmax), (ell > 0).long())
    span_no = span_no.cumsum(dim=1)[:, :wmax] - 1  # (B, W) ordinal of the span that starts last at or before
    word_on = cover > 0
    tok_idx = widx.clamp(min=0)
    selected = word_on.gather(1, tok_idx) & ok
    role_u = None
    if per_span_mix:
        span_u = keyed.uniform(keys, smax, stream=23)
        role_u = span_u.gather(1, span_no.clamp(min=0, max=smax - 1).gather(1, tok_idx))
    pool = replacement_pool(vocab_size, special_ids, dev)
    return apply_mix(ids, selected, keys, mask_id=mask_id, pool=pool, mix=mix, role_u=role_u)
