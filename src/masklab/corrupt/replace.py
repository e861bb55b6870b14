"""Replaced-token detection sampling (ELECTRA, Clark et al. 2020, Sec. 2; DeBERTaV3, He et al. 2023, Sec. 3).

ELECTRA picks k = min(max_predictions, max(1, round(prob * n))) positions per row *without replacement*, feeds
a small generator the row with those positions masked (85% mask token, 15% kept, as in ELECTRA's
``pretrain_helpers.mask``), samples a token at each masked position from the generator's softmax, and trains a
discriminator to tell, at every position, whether the token is the original. A sampled token that equals the
original is labelled *original* (Eq. 2, "if the generator happens to generate the correct token, that token is
considered real"). ``disallow_correct`` removes the original token from the sampling distribution.

Sampling is keyed: ``multinomial`` draws one number per position and inverts the CDF (float64); ``gumbel``
draws one Gumbel noise per (position, vocabulary entry) and takes the argmax (exact same law, V times more
hashing). Both give the same sample for an example whatever the batch it sits in. Pass ``generator`` (a
torch.Generator) instead of ``keys`` for fast non-keyed sampling.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from masklab.corrupt import keyed
from masklab.corrupt._select import check_prob, select_count
from masklab.corrupt.keyed import Stream
from masklab.corrupt.record import Corruption
from masklab.corrupt.tokens import apply_mix, check_ids, eligible, replacement_pool

__all__ = ["electra_mask", "sample_replacements", "rtd_labels", "METHODS"]

METHODS = ("gumbel", "multinomial")


def electra_mask(
    ids: torch.Tensor,
    keys: torch.Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: Sequence[int],
    prob: float = 0.15,
    max_predictions: int | None = None,
    mix: tuple[float, float, float] = (0.85, 0.0, 0.15),
    can: torch.Tensor | None = None,
) -> Corruption:
    """Generator input: exactly k positions per row without replacement (k as in ELECTRA), then ``mix``."""
    check_ids(ids, keys)
    check_prob("prob", prob)
    ok = eligible(ids, special_ids) if can is None else eligible(ids, special_ids) & can
    n = ok.sum(dim=1)
    k = torch.clamp(torch.floor(n.double() * prob + 0.5).long(), min=1)
    if max_predictions is not None:
        k = torch.clamp(k, max=max_predictions)
    k = torch.where(n > 0, k, torch.zeros_like(k))
    selected = select_count(ok, keyed.uniform(keys, ids.shape[1], stream=Stream.ELECTRA_SELECT), k)
    return apply_mix(
        ids,
        selected,
        keys,
        mask_id=mask_id,
        pool=replacement_pool(vocab_size, special_ids, ids.device),
        mix=mix,
    )


def sample_replacements(
    logits: torch.Tensor,
    original: torch.Tensor,
    selected: torch.Tensor,
    keys: torch.Tensor | None = None,
    *,
    method: str = "gumbel",
    temperature: float = 1.0,
    disallow_correct: bool = False,
    generator: torch.Generator | None = None,
    banned: Sequence[int] = (),
) -> torch.Tensor:
    """Discriminator input [B, L]: ``original`` with generator samples at ``selected`` positions.

    logits [B, L, V] (only rows at ``selected`` are used, so pass full logits), original [B, L] ids, selected
    [B, L] bool. ``banned`` token ids (specials) are never sampled; a banned id outside [0, V) names no logit
    and bans nothing (so does an ``original`` id outside [0, V) under ``disallow_correct``; negative ids are not
    read from the end). The generator's logits are detached: ELECTRA does not back-propagate through sampling.
    """
    if method not in METHODS:
        raise ValueError(f"unknown sampling method {method!r}; choose from {METHODS}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if keys is None and generator is None:
        raise ValueError("sample_replacements needs keys (keyed) or a torch.Generator")
    B, L, V = logits.shape
    b, pos = selected.nonzero(as_tuple=True)
    x = logits.detach()[b, pos].double() / temperature  # (N, V) float64: fp32 Gumbel caps near 16.6
    if len(banned):  # ids beyond the logits cannot be sampled anyway
        ban = torch.as_tensor(list(banned), dtype=torch.long, device=x.device)
        x[:, ban[(ban >= 0) & (ban < V)]] = -torch.inf
    if disallow_correct:
        o = original[b, pos].long()
        inside = (o >= 0) & (o < V)
        x[torch.arange(len(b), device=x.device)[inside], o[inside]] = -torch.inf
    if method == "gumbel":
        if generator is not None:
            u = torch.rand(x.shape, generator=generator, dtype=torch.float64, device=x.device)
        else:  # counter = position * V + vocabulary index, so each (example, position) has its own noise
            u = _keyed_at(keys[b], pos, V, stream=Stream.ELECTRA_GUMBEL)
        g = -torch.log(-torch.log(u.clamp(min=1e-300)))
        sampled = (x + g).argmax(dim=1)
    else:
        p = torch.softmax(x, dim=1)
        if generator is not None:
            u = torch.rand(len(b), generator=generator, dtype=torch.float64, device=x.device)
        else:
            u = _keyed_at(keys[b], pos, 1, stream=Stream.ELECTRA_MULTINOMIAL)[:, 0]
        cdf = p.cumsum(dim=1)
        sampled = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True)[:, 0].clamp(max=V - 1)
        # skip zero-probability entries that a rounding boundary could land on
        sampled = torch.where(p.gather(1, sampled[:, None])[:, 0] > 0, sampled, p.argmax(dim=1))
    out = original.clone()
    out[b, pos] = sampled.to(out.dtype)
    return out


def _keyed_at(keys: torch.Tensor, pos: torch.Tensor, n: int, stream: int) -> torch.Tensor:
    """Uniform float64 in (0, 1) [N, n] for each (key, position): a key per position, then n counters."""
    k = keyed.derive(keys, pos)
    return (keyed.uniform64(k, n, stream) + 2.0**-54).clamp(max=1 - 2.0**-53)


def rtd_labels(
    disc_inputs: torch.Tensor, original: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Discriminator labels [B, L] float: 1 where the token differs from the original, else 0 (sampled ==
    original counts as original); -100 on padding when ``attention_mask`` is given."""
    y = (disc_inputs != original).float()
    if attention_mask is not None:
        y = torch.where(attention_mask.bool(), y, torch.full_like(y, -100.0))
    return y
