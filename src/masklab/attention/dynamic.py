"""Trainable dynamic mask attention (DMA): a content-based, query-agnostic importance per key picks which keys each
head keeps; attention runs only over the kept keys, with the importance added as a bias.

Shi et al., 2025, "Trainable Dynamic Mask Sparse Attention" (arXiv:2508.02124), Sec. 3 (as in the Doge /
flash-dmattn code):

    delta = exp(A * softplus(V W_dt))            (B, H, Lk)     importance of each key, from the value states
    keep  = top-w over keys of delta, restricted to the keys the base mask allows (causal by default)
    out   = softmax(Q K^T / sqrt(d) + delta)[kept] V[kept]

``A`` (one per head) and ``W_dt`` are trained: the bias enters the softmax of the kept keys, so gradients reach it;
the top-w choice itself is not differentiable. Here attention is computed sparsely by gathering the ``w`` kept keys
per query ((B, H, Lq, w, D), no (Lq, Lk) score matrix); ``dense_reference`` is the same thing done densely with a
mask, the oracle for the tests. flash-dmattn needs CUDA; this is the small CPU-friendly version.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from masklab.attention.compile import to_dense
from masklab.attention.mods import MaskFn, causal

__all__ = ["DynamicMaskAttention", "gather_attention"]


def gather_attention(q, k, v, idx, valid, bias=None, scale=None):
    """Attention of each query over its own key subset.

    q ``(B, H, Lq, D)``, k / v ``(B, H, Lk, D)``, idx ``(B, H, Lq, w)`` key indices, valid ``(B, H, Lq, w)``
    bool,
    bias ``(B, H, Lk)`` per-key additive bias or None. Returns ``(B, H, Lq, D)`` and the probabilities
    ``(B, H, Lq, w)``. A query with no valid key outputs 0.
    """
    B, H, Lq, w = idx.shape
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    bi = torch.arange(B, device=idx.device).view(B, 1, 1, 1)
    hi = torch.arange(H, device=idx.device).view(1, H, 1, 1)
    kg, vg = k[bi, hi, idx], v[bi, hi, idx]  # (B, H, Lq, w, D): only the kept keys
    s = (kg @ q.unsqueeze(-1)).squeeze(-1) * scale  # (B, H, Lq, w)
    if bias is not None:
        s = s + bias[bi, hi, idx]
    s = s.masked_fill(~valid, float("-inf"))
    p = torch.softmax(s, dim=-1).nan_to_num(0.0)  # all-invalid rows -> 0
    return (p.unsqueeze(-2) @ vg).squeeze(-2), p


class DynamicMaskAttention(nn.Module):
    """Multi-head self-attention that keeps ``window`` keys per head and query, chosen by a learned key
    importance.

    ``forward(x, mask=None)``: x ``(B, L, dim)`` -> ``(B, L, dim)``. ``mask`` is a masklab mask function that
    bounds the candidates (default ``causal()``); the top-``window`` of the importance among the allowed keys
    are kept. ``last_keep`` holds the kept indices and validity of the last call, for inspection.
    """

    def __init__(self, dim: int, n_heads: int, window: int, *, base_mask: MaskFn | None = None):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim {dim} is not divisible by n_heads {n_heads}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.n_heads, self.head_dim, self.window = n_heads, dim // n_heads, window
        self.base_mask = base_mask or causal()
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.dt_proj = nn.Linear(dim, n_heads)  # value states (all heads) -> one importance logit per head
        self.A = nn.Parameter(torch.zeros(n_heads))  # per-head scale; A = 0 starts with a flat importance
        self.last_keep: tuple[torch.Tensor, torch.Tensor] | None = None

    def _project(self, x):
        B, L, _ = x.shape
        q, k, v = self.qkv(x).split(self.n_heads * self.head_dim, dim=-1)
        v_flat = v
        q, k, v = (t.view(B, L, self.n_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))  # (B, H, L, D)
        return q, k, v, v_flat

    def importance(self, v_flat: torch.Tensor) -> torch.Tensor:
        """delta = exp(A * softplus(v W_dt)): ``(B, L, dim)`` value states -> ``(B, H, L)``."""
        return torch.exp(self.A * F.softplus(self.dt_proj(v_flat))).transpose(1, 2)

    def select(self, delta: torch.Tensor, mask: MaskFn) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``window`` allowed keys per (head, query): indices and validity, each ``(B, H, Lq, w)``."""
        B, H, L = delta.shape
        allowed = to_dense(mask, L, L, device=delta.device, batch=getattr(mask, "batch", None))  # (1|B, 1, L, L)
        score = delta.detach()[:, :, None, :].masked_fill(~allowed, float("-inf"))  # (B, H, L, L)
        w = min(self.window, L)
        top = score.topk(w, dim=-1)
        return top.indices, top.values > float("-inf")

    def forward(self, x: torch.Tensor, mask: MaskFn | None = None) -> torch.Tensor:
        B, L, dim = x.shape
        q, k, v, v_flat = self._project(x)
        delta = self.importance(v_flat)
        idx, valid = self.select(delta, mask or self.base_mask)
        self.last_keep = (idx, valid)
        o, _ = gather_attention(q, k, v, idx, valid, bias=delta)
        return self.out(o.transpose(1, 2).reshape(B, L, dim))

    def dense_reference(self, x: torch.Tensor, mask: MaskFn | None = None) -> torch.Tensor:
        """The same computation with a full (L, L) score matrix masked to the kept keys (test oracle)."""
        B, L, dim = x.shape
        q, k, v, v_flat = self._project(x)
        delta = self.importance(v_flat)
        idx, valid = self.select(delta, mask or self.base_mask)
        keep = torch.zeros(B, self.n_heads, L, L, dtype=torch.bool, device=x.device)
        keep.scatter_(-1, idx, valid)
        s = q @ k.transpose(-1, -2) * self.head_dim**-0.5 + delta[:, :, None, :]
        p = torch.softmax(s.masked_fill(~keep, float("-inf")), dim=-1).nan_to_num(0.0)
        return self.out((p @ v).transpose(1, 2).reshape(B, L, dim))
