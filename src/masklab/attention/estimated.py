"""SEA-style estimated attention mask: a cheap linear-attention estimate of the attention matrix, at reduced width,
chooses the top-k entries per query; exact softmax attention then runs on those entries only.

Lee et al., 2024, "SEA: Sparse Linear Attention with Estimated Attention Mask" (ICLR 2024, arXiv:2310.01777), Sec. 3
and Fig. 2: the estimator predicts a compressed attention matrix (width K < L), top-k per row gives a sparse mask
that is resized to (L, L), and the student is trained with a KL distillation loss against the attention matrix of a
dense teacher. Simplification here: the estimate is a kernel (elu + 1) linear attention over ``est_dim``-wide
query/key features, with keys mean-pooled into chunks of ``chunk`` positions (width ``ceil(L / chunk)``); the mask
is resized by repeating each kept chunk over its positions. SEA's CNN decoder of the estimate is left out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from masklab.attention.compile import to_dense
from masklab.attention.dynamic import gather_attention
from masklab.attention.mods import MaskFn, causal

__all__ = ["EstimatedSparseAttention", "pool_columns"]


def pool_columns(p: torch.Tensor, chunk: int) -> torch.Tensor:
    """Sum attention probabilities ``(..., Lq, Lk)`` over key chunks -> ``(..., Lq, ceil(Lk / chunk))``."""
    Lk = p.shape[-1]
    width = -(-Lk // chunk)
    p = F.pad(p, (0, width * chunk - Lk))
    return p.view(*p.shape[:-1], width, chunk).sum(-1)


class EstimatedSparseAttention(nn.Module):
    """Multi-head self-attention over the ``top_k`` key chunks per query that a linear-attention estimate
    picks.

    ``forward(x, mask=None, sparse=True)``: x ``(B, L, dim)`` -> ``(B, L, dim)``; ``sparse=False`` is plain
    dense attention with the same weights (the teacher). ``estimate(x)`` gives the compressed estimate as
    log-probabilities ``(B, H, L, width)``; ``distill_loss(x, teacher_probs)`` is SEA's KL term.
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        top_k: int,
        *,
        est_dim: int = 8,
        chunk: int = 1,
        base_mask: MaskFn | None = None,
    ):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim {dim} is not divisible by n_heads {n_heads}")
        if top_k < 1 or chunk < 1 or est_dim < 1:
            raise ValueError(f"top_k, chunk and est_dim must be >= 1, got {top_k}, {chunk}, {est_dim}")
        self.n_heads, self.head_dim = n_heads, dim // n_heads
        self.top_k, self.chunk, self.est_dim = top_k, chunk, est_dim
        self.base_mask = base_mask or causal()
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)  # exact attention
        self.out = nn.Linear(dim, dim, bias=False)
        self.est = nn.Linear(dim, 2 * n_heads * est_dim)  # estimator: reduced-width query / key features
        self.last_keep: tuple[torch.Tensor, torch.Tensor] | None = None

    def _heads(self, t, d):
        B, L, _ = t.shape
        return t.view(B, L, self.n_heads, d).transpose(1, 2)

    def _allowed_chunks(self, mask: MaskFn, L: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        allowed = to_dense(mask, L, L, device=device, batch=getattr(mask, "batch", None))  # (1|B, 1, L, L)
        return allowed, pool_columns(allowed.float(), self.chunk) > 0  # chunk usable if any key in it is

    def estimate(self, x: torch.Tensor, mask: MaskFn | None = None) -> torch.Tensor:
        """Linear-attention estimate of the attention matrix at width ``ceil(L / chunk)``: log-probs."""
        B, L, _ = x.shape
        qe, ke = self.est(x).split(self.n_heads * self.est_dim, dim=-1)
        qe, ke = (
            F.elu(self._heads(qe, self.est_dim)) + 1,
            F.elu(self._heads(ke, self.est_dim)) + 1,
        )  # phi >= 0
        width = -(-L // self.chunk)
        ke = F.pad(ke, (0, 0, 0, width * self.chunk - L)).view(B, self.n_heads, width, self.chunk, -1).mean(3)
        _, ok = self._allowed_chunks(mask or self.base_mask, L, x.device)
        kern = (qe @ ke.transpose(-1, -2)).masked_fill(~ok, 0.0)  # (B, H, L, width), phi(q) . phi(k_chunk)
        return torch.log(kern + 1e-9) - torch.log(kern.sum(-1, keepdim=True) + 1e-9 * width)

    def select(self, log_est: torch.Tensor, mask: MaskFn) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k chunks per query, resized to key indices: ``(B, H, L, k * chunk)`` indices and validity."""
        B, H, L, width = log_est.shape
        allowed, ok = self._allowed_chunks(mask, L, log_est.device)
        k = min(self.top_k, width)
        top = log_est.detach().masked_fill(~ok, float("-inf")).topk(k, dim=-1)
        pos = top.indices.unsqueeze(-1) * self.chunk + torch.arange(self.chunk, device=log_est.device)
        pos = pos.flatten(-2)  # (B, H, L, k * chunk)
        in_range = pos < L
        pos = pos.clamp(max=L - 1)
        chunk_ok = (top.values > float("-inf")).repeat_interleave(self.chunk, dim=-1)
        key_ok = allowed.expand(B, H, L, L).gather(-1, pos)
        return pos, chunk_ok & in_range & key_ok

    def forward(self, x: torch.Tensor, mask: MaskFn | None = None, sparse: bool = True) -> torch.Tensor:
        B, L, dim = x.shape
        mask = mask or self.base_mask
        q, k, v = (self._heads(t, self.head_dim) for t in self.qkv(x).chunk(3, dim=-1))
        if not sparse:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=to_dense(mask, L, L, device=x.device))
        else:
            idx, valid = self.select(self.estimate(x, mask), mask)
            self.last_keep = (idx, valid)
            o, _ = gather_attention(q, k, v, idx, valid)
        return self.out(o.transpose(1, 2).reshape(B, L, dim))

    def dense_probs(self, x: torch.Tensor, mask: MaskFn | None = None) -> torch.Tensor:
        """Exact attention probabilities ``(B, H, L, L)`` of this layer (a teacher's matrix)."""
        B, L, _ = x.shape
        q, k, _ = (self._heads(t, self.head_dim) for t in self.qkv(x).chunk(3, dim=-1))
        allowed = to_dense(mask or self.base_mask, L, L, device=x.device)
        s = (q @ k.transpose(-1, -2)) * self.head_dim**-0.5
        return torch.softmax(s.masked_fill(~allowed, float("-inf")), dim=-1)

    def dense_reference(self, x: torch.Tensor, mask: MaskFn | None = None) -> torch.Tensor:
        """Dense attention with the (L, L) mask of the entries the estimate kept (test oracle)."""
        B, L, dim = x.shape
        mask = mask or self.base_mask
        q, k, v = (self._heads(t, self.head_dim) for t in self.qkv(x).chunk(3, dim=-1))
        idx, valid = self.select(self.estimate(x, mask), mask)
        keep = torch.zeros(B, self.n_heads, L, L, dtype=torch.bool, device=x.device)
        keep.scatter_(-1, idx, valid)
        s = (q @ k.transpose(-1, -2)) * self.head_dim**-0.5
        p = torch.softmax(s.masked_fill(~keep, float("-inf")), dim=-1).nan_to_num(0.0)
        return self.out((p @ v).transpose(1, 2).reshape(B, L, dim))

    def distill_loss(self, x: torch.Tensor, teacher_probs: torch.Tensor, mask: MaskFn | None = None):
        """KL(teacher || estimate) over compressed columns, mean over (B, H, L): SEA's distillation loss."""
        target = pool_columns(teacher_probs.detach(), self.chunk)  # (B, H, L, width)
        log_est = self.estimate(x, mask)
        return (target * (torch.log(target + 1e-9) - log_est)).sum(-1).mean()
