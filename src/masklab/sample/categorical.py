"""Exact categorical sampling in float64 by inverse CDF.

Why float64: Gumbel-max with float32 noise truncates the Gumbel tail (the largest float32 uniform below 1 caps
the noise at about 16.6), which under-samples rare tokens and lowers the effective temperature of
masked-diffusion samplers (Zheng et al. 2024, "Masked diffusion models are secretly time-agnostic masked
models and exploit inaccurate categorical sampling", Sec. 4). Here the probabilities of the rows being sampled
are formed in float64 and one 53-bit uniform per row picks the token from the cumulative sum, so a token of
probability p is drawn with probability p up to float64 rounding. Only the sampled rows are promoted to
float64.
"""

from __future__ import annotations

import torch

__all__ = ["categorical", "filter_logits", "gumbel_argmax"]


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set logits outside the top-k / nucleus (top-p) set to -inf. Keeps at least one token per row."""
    if top_k is not None:
        if top_k <= 0:
            raise ValueError(f"top_k must be positive, got {top_k}")
        if top_k < logits.shape[-1]:
            kth = logits.topk(top_k, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        if top_p < 1.0:
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            probs = sorted_logits.softmax(-1)
            before = probs.cumsum(-1) - probs  # mass strictly before each token
            drop_sorted = before >= top_p
            drop_sorted[..., 0] = False
            drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
            logits = logits.masked_fill(drop, float("-inf"))
    return logits


def categorical(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    u: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sample one id per row of ``logits`` [..., V]. Temperature 0 is greedy (argmax).

    Randomness comes from ``u`` (float64 uniforms of shape ``logits.shape[:-1]``, e.g. keyed per row) or else
    from ``generator``.
    """
    if not temperature >= 0:  # False for NaN too
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if torch.isnan(logits).any():
        raise ValueError("logits contain NaN")
    if not torch.isfinite(logits).any(-1).all():
        raise ValueError("every row of logits needs at least one finite value")
    if temperature == 0:
        return filter_logits(logits, top_k, top_p).argmax(-1)
    x = filter_logits(logits.double() / temperature, top_k, top_p)  # float64 only for the rows sampled
    cdf = x.softmax(-1).cumsum(-1)  # (..., V)
    if u is None:
        u = torch.rand(logits.shape[:-1], dtype=torch.float64, device=logits.device, generator=generator)
    target = (u.to(cdf.dtype) * cdf[..., -1]).unsqueeze(-1)
    idx = torch.searchsorted(cdf.contiguous(), target.contiguous(), right=True).squeeze(-1)
    return idx.clamp_(max=logits.shape[-1] - 1)


def gumbel_argmax(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The common Gumbel-max sampler, ``argmax(logits / T + G)`` with G = -log(-log U) in ``dtype``.

    Kept as the reference (anchor) that :func:`categorical` is compared against: in float32 ``torch.rand`` is
    a multiple of 2**-24, so G lies in [-2.81, 16.64] and a token whose logit trails the winner's by more than
    about 19.4 can never be drawn; tokens trailing by 12-19 are under-drawn. Many such tokens together (a
    large vocabulary, or MDLM's many-step ancestral update whose "stay masked" category dwarfs every token)
    lower the entropy of the samples (Zheng et al. 2024, Sec. 4).
    """
    u = torch.rand(logits.shape, dtype=dtype, device=logits.device, generator=generator)
    g = -torch.log(-torch.log(u))
    return (logits.to(dtype) / max(temperature, 1e-12) + g).argmax(-1)
