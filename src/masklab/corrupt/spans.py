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
from masklab.corrupt._select import check_prob
from masklab.corrupt.keyed import Stream
from masklab.corrupt.record import Corruption
from masklab.corrupt.tokens import apply_mix, check_ids, eligible, replacement_pool, word_index, word_starts

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
    ok, starts = _words(ids, special_ids, word_ids, can)
    W = starts.sum(dim=1)  # (B,) eligible words
    K = _budget(W, prob, count)
    table = length_table(lengths, p=p, lam=lam, low=low, high=high) if isinstance(lengths, str) else lengths
    ell, S = _span_lengths(keys, K, table)
    wmax = max(int(W.max()), 1) if len(W) else 1
    if no_overlap:
        ell, start = _packed_starts(keys, ell, S, W, K, min_gap, wmax)
    else:
        start = _independent_starts(keys, ell, W)
    word_on, span_no = _cover(start, ell, wmax)
    tok_idx = word_index(starts, ok).clamp(min=0)  # word ordinal of each token (outside words: cut by ``ok``)
    selected = word_on.gather(1, tok_idx) & ok
    role_u = None
    if per_span_mix:  # one role draw per span, read by each of its tokens
        smax = ell.shape[1]
        span_u = keyed.uniform(keys, smax, stream=Stream.SPAN_ROLE)
        role_u = span_u.gather(1, span_no.clamp(min=0, max=smax - 1).gather(1, tok_idx))
    pool = replacement_pool(vocab_size, special_ids, ids.device)
    return apply_mix(ids, selected, keys, mask_id=mask_id, pool=pool, mix=mix, role_u=role_u)


def _words(ids, special_ids, word_ids, can) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, L] bool: eligible tokens (not special, inside a word, allowed by ``can``) and first tokens of words
    (every eligible token when ``word_ids`` is None)."""
    ok = eligible(ids, special_ids)
    if word_ids is not None:
        if word_ids.shape != ids.shape:
            raise ValueError(f"word_ids shape {tuple(word_ids.shape)} does not match ids shape {tuple(ids.shape)}")
        ok = ok & (word_ids >= 0)
    if can is not None:
        ok = ok & can
    return ok, word_starts(word_ids, ok) if word_ids is not None else ok


def _budget(W: torch.Tensor, prob: float, count) -> torch.Tensor:
    """[B] words to mask: ``round(prob * W)`` (halves up), or ``count`` capped at W."""
    if count is None:
        return torch.floor(W.double() * prob + 0.5).long()
    return torch.minimum(torch.as_tensor(count, device=W.device).long().expand(len(W)), W)


def _span_lengths(keys: torch.Tensor, K: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Span lengths [B, S_max] in words and the span count S [B]: lengths from ``table`` by inverse CDF, drawn
    until they reach the budget K, the last cut to fit, inactive spans 0; then the active spans are shuffled so
    the cut span is not always last."""
    dev = K.device
    cdf = table.double().cumsum(0).to(dev)
    cdf[-1] = 1.0
    smax = max(int(K.max()), 1) if len(K) else 1
    ell = torch.searchsorted(cdf, keyed.uniform64(keys, smax, stream=Stream.SPAN_LENGTH), right=True).clamp(min=1)
    before = ell.cumsum(dim=1) - ell
    active = before < K[:, None]
    ell = torch.where(active, torch.minimum(ell, K[:, None] - before), torch.zeros_like(ell))
    order = torch.where(
        active, keyed.uniform(keys, smax, stream=Stream.SPAN_ORDER), torch.full(ell.shape, 2.0, device=dev)
    )
    return ell.gather(1, order.argsort(dim=1, stable=True)), active.sum(dim=1)


def _merge_for_gap(ell, S, W, K, min_gap: int) -> tuple[torch.Tensor, torch.Tensor]:
    """When ``min_gap`` cannot fit S spans in a row, merge its last spans into one so that every gap holds."""
    fit = torch.div(W - K, min_gap, rounding_mode="floor") + 1
    S_new = torch.minimum(S, fit.clamp(min=1))
    i = torch.arange(ell.shape[1], device=ell.device)
    tail = torch.where(i >= (S_new - 1)[:, None], ell, torch.zeros_like(ell)).sum(dim=1, keepdim=True)
    ell = torch.where(i < (S_new - 1)[:, None], ell, torch.where(i == (S_new - 1)[:, None], tail, 0))
    return ell, torch.where(S > 0, S_new, S)


def _packed_starts(keys, ell, S, W, K, min_gap: int, wmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lengths and start word [B, S_max] of spans without overlap, at least ``min_gap`` free words apart: S
    distinct slots out of ``free + S``, in increasing order (stars and bars), place every span at once."""
    if min_gap > 0:
        ell, S = _merge_for_gap(ell, S, W, K, min_gap)
    B, smax = ell.shape
    dev = ell.device
    g = torch.full_like(S, min_gap)
    free = W - K - (S - 1).clamp(min=0) * g  # (B,) free words to spread over S + 1 bins
    slots = free + S
    u = keyed.uniform(keys, wmax + 1, stream=Stream.SPAN_PLACE)
    pos = torch.arange(wmax + 1, device=dev)
    u = torch.where(pos[None] < slots[:, None], u, torch.full_like(u, 2.0))
    rank = u.argsort(dim=1, stable=True).argsort(dim=1, stable=True)
    chosen = rank < S[:, None]
    which = (chosen.long().cumsum(dim=1) - 1).clamp(min=0)
    which = torch.where(chosen, which, torch.full_like(which, smax))
    c = torch.zeros(B, smax + 1, dtype=torch.long, device=dev).scatter_(1, which, pos.expand(B, -1))[:, :smax]
    i = torch.arange(smax, device=dev)
    return ell, c - i + (ell.cumsum(dim=1) - ell) + i * g[:, None]


def _independent_starts(keys, ell, W) -> torch.Tensor:
    """Start word [B, S_max] of each span, uniform over the starts where it fits (spans may overlap)."""
    u = keyed.uniform64(keys, ell.shape[1], stream=Stream.SPAN_PLACE)
    return torch.floor(u * (W[:, None] - ell + 1).double()).long()


def _cover(start, ell, wmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per word ordinal [B, wmax]: whether a span covers it, and the ordinal of the span that starts last at or
    before it (a difference array: +1 at each span start, -1 after its end)."""
    B, dev = start.shape[0], start.device
    start = torch.where(ell > 0, start, torch.full_like(start, wmax))
    diff = torch.zeros(B, wmax + 2, dtype=torch.long, device=dev)
    diff.scatter_add_(1, start.clamp(max=wmax), (ell > 0).long())
    diff.scatter_add_(1, (start + ell).clamp(max=wmax + 1), -(ell > 0).long())
    cover = diff.cumsum(dim=1)[:, :wmax]  # (B, W) spans covering each word
    span_no = torch.zeros(B, wmax + 2, dtype=torch.long, device=dev)
    span_no.scatter_add_(1, start.clamp(max=wmax), (ell > 0).long())
    return cover > 0, span_no.cumsum(dim=1)[:, :wmax] - 1
