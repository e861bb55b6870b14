"""SEA: sparse attention on an estimated attention mask. A kernel (Performer) estimate of the attention, decoded to a
compressed attention matrix of fixed width T_M, picks the top-k entries per query; exact softmax attention then runs
on those entries only.

Lee et al., 2024, "SEA: Sparse Linear Attention with Estimated Attention Mask" (ICLR 2024, arXiv:2310.01777),
Sec. 3 and Fig. 2, as the reference code does it (gmlwns2000/sea-attention, ``PerlinAttention.forward`` in
``src/models/perlin_attention/attention.py``; the resize in ``ops/kernels/resize_m_to_t.py``):

1. Estimate. Performer attention (Choromanski et al., 2021, "Rethinking Attention with Performers": orthogonal random
   features, Sec. 2.4) of the layer's q and k, over values ``[p ; v]`` (p: a learned per-position vector when causal,
   the bilinearly resampled identity otherwise). As the reference (``FastAttention(...,
   generalized_attention=causal)``), a causal estimate uses Performer's generalized ReLU features and a
   bidirectional one FAVOR+, the positive random features of the softmax kernel (Lemma 1); ``kernel=`` picks either.
   The Performer output, concatenated with v, goes through ``Linear, LayerNorm, GELU`` and one ``Linear`` to T_M
   logits per query: the compressed attention matrix ``(B, H, L, T_M)``, then its softmax.
2. Resize. Column m of a query that may see n keys covers the keys whose rank r among those n has
   ``floor((r + 0.5) / n * T_M) = m``: each row's T_M columns are stretched over its own visible keys (causal: keys
   0..i). Integer form here: ``m(r) = ((2r + 1) T_M - 1) // (2n)``, the reference's ``floor(x - 1e-4)``.
3. Top-k. Per query, ``k_cols = clamp(round(k * T_M / n), 1, T_M)`` columns of highest estimated probability are
   kept, so a query keeps about k keys whatever its n. The kept columns are expanded to key indices
   ``(B, H, L, W)`` (W: the most keys any query keeps) by a cumulative sum and ``searchsorted``: no (L, L) tensor.
4. Attend. Exact softmax attention of q over the kept keys (``gather_attention``).
5. Distill. ``distill_loss`` is the reference's estimator loss against a dense teacher's attention probabilities:
   ``0.1 * KL(teacher || softmax(resized estimate))`` (``batchmean`` over rows) ``+ MSE`` of the two matrices.

Memory of the sparse path: O(L * (T_M + W + features)) per head; W is about k (plus about L / T_M, the keys of one
column). Deviations (also in docs/sparse_attention.md): the causal CNN that the reference runs over the compressed
matrix is left out; the budget is per head (the reference's default pools it over the heads of a query,
``k_flatten_dim='causal_batch'``, which lets one head keep up to L keys); the output is the plain sparse attention
(the reference's learned row scaler, average-value mix and LayerNorm merge are left out, so keeping every entry is
exactly dense attention); the random features are drawn once from ``seed`` (the reference redraws them every 1000
steps); FAVOR+ keys are stabilised by a data-independent bound, not by the max over all keys (see
``favor_features``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers.masking_utils import causal_mask_function

from masklab.attention.dynamic import attention_layers, gather_attention, use_attention
from masklab.attention.hf import MaskContext

__all__ = [
    "NAME",
    "SEAEstimator",
    "EstimatedSparseAttention",
    "add_estimators",
    "causal_linear_attention",
    "column_of_key",
    "column_starts",
    "favor_features",
    "orthogonal_features",
    "relu_features",
]

NAME = "masklab_sea"  # the attention implementation name registered with transformers
FP_MIN = torch.finfo(torch.float32).min / 2  # the reference's fill for hidden entries (FP_MIN in attention.py)
TINY = 1e-30  # a kernel sum whose key features all underflowed: output 0, not NaN


def orthogonal_features(n_features: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """Performer's random projection ``(n_features, dim)``: blocks of ``dim`` orthogonal rows (QR of a Gaussian),
    each row scaled by the norm of an independent Gaussian vector, so rows are marginally Gaussian (Sec. 2.4)."""
    blocks = []
    for _ in range(-(-n_features // dim)):
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator))
        blocks.append(q.T)
    w = torch.cat(blocks)[:n_features]
    return w * torch.randn(n_features, dim, generator=generator).norm(dim=1, keepdim=True)


def favor_features(x: torch.Tensor, proj: torch.Tensor, *, query: bool, eps: float = 1e-4) -> torch.Tensor:
    """FAVOR+ positive random features, ``E[phi(q) . phi(k)] = exp(q . k / sqrt(d))`` (Lemma 1):
    ``phi(x) = exp(w . x' - |x'|^2 / 2 - c) / sqrt(m)`` with ``x' = x / d^(1/4)``. x ``(B, H, L, d)`` ->
    ``(B, H, L, m)``.

    ``c`` keeps exp in range and cancels in normalised attention. Queries: their own max, plus ``eps`` (as
    performer_pytorch's ``softmax_kernel``). Keys: the data-independent bound ``max_i |w_i|^2 / 2`` of
    ``w . x' - |x'|^2 / 2`` and no ``eps``, so that no key's features depend on other keys (performer_pytorch's max
    over all keys would leak later keys into a causal estimate, and an ``eps`` next to the bounded features would
    swamp them).
    """
    x = x * x.shape[-1] ** -0.25
    wx = x @ proj.T  # (B, H, L, m)
    half_sq = x.square().sum(-1, keepdim=True) / 2
    if query:
        return (torch.exp(wx - half_sq - wx.detach().amax(-1, keepdim=True)) + eps) * proj.shape[0] ** -0.5
    return torch.exp(wx - half_sq - proj.square().sum(-1).max() / 2) * proj.shape[0] ** -0.5


def relu_features(x: torch.Tensor, proj: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Performer's generalized attention features (Sec. 2.3; performer_pytorch ``generalized_kernel``):
    ``phi(x) = relu(w . x') + eps``, ``x' = x / d^(1/4)``. x ``(B, H, L, d)`` -> ``(B, H, L, m)``. The reference's
    choice for causal SEA (``generalized_attention=causal``): its estimate does not blow up with the norms of q and
    k the way the softmax kernel's variance does."""
    return torch.relu((x * x.shape[-1] ** -0.25) @ proj.T) + eps


def causal_linear_attention(fq: torch.Tensor, fk: torch.Tensor, v: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """``out_i = sum_{j<=i} (fq_i . fk_j) v_j / sum_{j<=i} fq_i . fk_j`` in chunks of ``chunk`` positions: exact
    within a chunk, a prefix sum of ``fk v^T`` across chunks. fq / fk ``(B, H, L, m)``, v ``(B, H, L, Dv)``;
    memory O(L * (chunk + m * Dv / chunk))."""
    B, H, L, m = fq.shape
    n = -(-L // chunk)
    pad = n * chunk - L  # zero features: padded keys add nothing
    fq, fk, v = (F.pad(t, (0, 0, 0, pad)).view(B, H, n, chunk, t.shape[-1]) for t in (fq, fk, v))
    kv = fk.transpose(-1, -2) @ v  # (B, H, n, m, Dv): each chunk's sum of fk v^T
    z = fk.sum(-2)  # (B, H, n, m)
    kv_before, z_before = kv.cumsum(2) - kv, z.cumsum(2) - z  # exclusive prefix over chunks
    inner = (fq @ fk.transpose(-1, -2)).tril()  # (B, H, n, chunk, chunk): causal within the chunk
    num = fq @ kv_before + inner @ v  # (B, H, n, chunk, Dv)
    den = (fq * z_before.unsqueeze(-2)).sum(-1) + inner.sum(-1)  # (B, H, n, chunk)
    return (num / den.clamp_min(TINY).unsqueeze(-1)).view(B, H, n * chunk, -1)[:, :, :L]


def _linear_attention(fq, fk, v) -> torch.Tensor:
    """Bidirectional kernel attention: ``fq (fk^T v) / fq (fk^T 1)``."""
    return (fq @ (fk.transpose(-1, -2) @ v)) / (fq @ fk.sum(-2).unsqueeze(-1)).clamp_min(TINY)


def column_starts(n: torch.Tensor, width: int) -> torch.Tensor:
    """First visible-key rank of each compressed column, and the end: ``(..., width + 1)`` for visible counts
    ``n`` ``(...)``. Column m holds ranks r with ``((2r + 1) * width - 1) // (2n) = m``, i.e.
    ``r >= ceil((2nm + 1 - width) / (2 width))``."""
    m = torch.arange(width + 1, device=n.device)
    a = 2 * n.unsqueeze(-1) * m + 1 - width
    return (-((-a) // (2 * width))).clamp(min=0).minimum(n.unsqueeze(-1))


def column_of_key(n: torch.Tensor, width: int, n_keys: int) -> torch.Tensor:
    """The reference's resize index: the compressed column of key rank j for each row, ``width`` where j >= n
    (hidden). n ``(L,)`` -> ``(L, n_keys)``. Only for the loss and for tests: it is (L, L)."""
    j = torch.arange(n_keys, device=n.device)
    col = ((2 * j + 1) * width - 1) // (2 * n.unsqueeze(-1))
    return torch.where(j < n.unsqueeze(-1), col, width)


def _identity_positions(L: int, dim: int, device) -> torch.Tensor:
    """The reference's non-causal position values: the ``dim x dim`` identity sampled bilinearly at the relative
    position ``t / (L - 1)``: ``e[t, c] = max(0, 1 - |c - t (dim - 1) / (L - 1)|)``. ``(L, dim)``."""
    u = torch.arange(L, device=device) * ((dim - 1) / max(L - 1, 1))
    return (1 - (torch.arange(dim, device=device) - u[:, None]).abs()).clamp(min=0)


KERNELS = {  # name -> (q, k, proj) -> query and key features
    "softmax": lambda q, k, proj: (favor_features(q, proj, query=True), favor_features(k, proj, query=False)),
    "relu": lambda q, k, proj: (relu_features(q, proj), relu_features(k, proj)),
}


class SEAEstimator(nn.Module):
    """SEA's estimator and sparse attention for one attention layer with heads of size ``head_dim``.

    ``width`` is T_M, the compressed matrix width; ``k`` the keys kept per query (paper default 7); ``n_features``
    the Performer features (default ``int(d ln d)``, the reference's ``performer_nb_factor = 1``); ``causal``
    selects the visible keys (0..i, or all L); ``max_len`` bounds L for the learned causal position values.
    ``attend(q, k, v)`` is the sparse path, ``scores(q, k, v)`` the compressed logits ``(B, H, L, width)``,
    ``distill_loss(q, k, v, teacher_probs)`` the estimator's loss.
    """

    def __init__(
        self,
        head_dim: int,
        *,
        width: int = 128,
        k: int = 7,
        n_features: int | None = None,
        causal: bool = True,
        max_len: int = 2048,
        seed: int = 0,
        chunk: int = 64,
        kernel: str | None = None,
    ):
        super().__init__()
        for name, val in (("head_dim", head_dim), ("width", width), ("k", k), ("max_len", max_len), ("chunk", chunk)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be an int >= 1, got {val!r}")
        m = n_features if n_features is not None else max(1, int(head_dim * math.log(head_dim)))
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ValueError(f"n_features must be an int >= 1, got {n_features!r}")
        kernel = kernel or ("relu" if causal else "softmax")  # the reference: generalized_attention=causal
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {sorted(KERNELS)}, got {kernel!r}")
        self.width, self.k, self.causal, self.chunk, self.kernel = width, k, causal, chunk, kernel
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("proj", orthogonal_features(m, head_dim, g))  # fixed random features, saved
        # the reference's v_eye_learned_causal: one learned value vector per position
        self.pos = nn.Parameter(torch.randn(max_len, head_dim, generator=g)) if causal else None
        self.enc = nn.Sequential(nn.Linear(3 * head_dim, 2 * head_dim), nn.LayerNorm(2 * head_dim), nn.GELU())
        self.dec = nn.Linear(2 * head_dim, width)  # one logit per compressed column
        self.last_keep: tuple[torch.Tensor, torch.Tensor] | None = None
        self.distilling = False  # inside a transformers model: dense output and a loss instead of the sparse path
        self.last_loss: torch.Tensor | None = None

    def visible(self, L: int, device=None) -> torch.Tensor:
        """Keys each query may see, ``(L,)``: ``i + 1`` when causal, else ``L``."""
        ar = torch.arange(L, device=device)
        return ar + 1 if self.causal else torch.full_like(ar, L)

    def scores(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Compressed attention logits ``(B, H, L, width)`` from the layer's q, k, v ``(B, H, L, head_dim)``."""
        B, H, L, D = v.shape
        if self.causal:
            if L > self.pos.shape[0]:
                raise ValueError(f"sequence length {L} exceeds max_len {self.pos.shape[0]}")
            pos = self.pos[:L]
        else:
            pos = _identity_positions(L, D, v.device).to(v.dtype)
        values = torch.cat([pos.expand(B, H, L, D), v], dim=-1)  # (B, H, L, 2D)
        fq, fk = KERNELS[self.kernel](q, k, self.proj)  # (B, H, L, m) each
        ctx = causal_linear_attention(fq, fk, values, self.chunk) if self.causal else _linear_attention(fq, fk, values)
        return self.dec(self.enc(torch.cat([ctx, v], dim=-1)))  # (B, H, L, width)

    def chosen_columns(self, scores: torch.Tensor) -> torch.Tensor:
        """The kept compressed columns ``(B, H, L, width)`` bool: per query, the ``clamp(round(k T_M / n), 1, T_M)``
        of highest estimate."""
        B, H, L, T = scores.shape
        n = self.visible(L, scores.device)
        budget = (self.k * T / n).round().clamp(1, T).long()  # (L,) columns per query
        top = scores.detach().topk(int(budget.max()), dim=-1).indices  # (B, H, L, k_max)
        keep = torch.arange(top.shape[-1], device=scores.device) < budget[:, None]  # (L, k_max)
        return torch.zeros(B, H, L, T, dtype=torch.bool, device=scores.device).scatter_(-1, top, keep.expand_as(top))

    def select(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Key indices and validity ``(B, H, L, W)`` of the kept columns, W the most keys any query keeps."""
        chosen = self.chosen_columns(scores)
        B, H, L, T = chosen.shape
        starts = column_starts(self.visible(L, scores.device), T)  # (L, T + 1)
        size = (starts[:, 1:] - starts[:, :-1]) * chosen  # (B, H, L, T): keys each kept column adds
        end = size.cumsum(-1)  # slots of column c: [end_c - size_c, end_c)
        total = end[..., -1:]  # (B, H, L, 1)
        slot = torch.arange(int(total.max()), device=scores.device).expand(B, H, L, -1).contiguous()  # (B,H,L,W)
        col = torch.searchsorted(end, slot, right=True).clamp(max=T - 1)  # the column each slot falls in
        key = starts[:, :-1].expand(B, H, L, T).gather(-1, col) + slot - (end - size).gather(-1, col)
        valid = slot < total
        return key.masked_fill(~valid, 0), valid

    def attend(self, q, k, v, scale: float | None = None) -> torch.Tensor:
        """The sparse path: exact attention over the estimated top-k entries, ``(B, H, L, head_dim)``."""
        idx, valid = self.select(self.scores(q, k, v))
        self.last_keep = (idx, valid)
        return gather_attention(q, k, v, idx, valid, scale=scale)[0]

    def resized(self, scores: torch.Tensor) -> torch.Tensor:
        """The compressed logits stretched to ``(B, H, L, L)`` (hidden keys FP_MIN): the reference's
        ``resize_from_m_to_t``. For the loss and the tests only."""
        B, H, L, T = scores.shape
        col = column_of_key(self.visible(L, scores.device), T, L)  # (L, L)
        return F.pad(scores, (0, 1), value=FP_MIN).gather(-1, col.expand(B, H, L, L))

    def distill_loss(self, q, k, v, teacher_probs: torch.Tensor) -> torch.Tensor:
        """SEA's estimator loss against the teacher's attention probabilities ``(B, H, L, L)``: 0.1 * KL (batchmean
        over rows) + MSE, both of softmax over the resized estimate (reference ``loss_kl_t + loss_mse_t``)."""
        L = teacher_probs.shape[-1]
        target = teacher_probs.detach()
        log_est = F.log_softmax(self.resized(self.scores(q, k, v)), dim=-1)
        kl = F.kl_div(log_est.reshape(-1, L), target.reshape(-1, L), reduction="batchmean")
        return 0.1 * kl + F.mse_loss(log_est.exp(), target)


def _dense_probs(q, k, scale, causal: bool) -> torch.Tensor:
    """Exact attention probabilities ``(B, H, L, L)`` (a teacher's matrix)."""
    s = (q @ k.transpose(-1, -2)) * scale
    if causal:
        L = s.shape[-1]
        s = s.masked_fill(~torch.ones(L, L, dtype=torch.bool, device=s.device).tril(), float("-inf"))
    return torch.softmax(s, dim=-1)


class EstimatedSparseAttention(nn.Module):
    """Multi-head self-attention (own q/k/v/out projections) whose sparse path is SEA.

    ``forward(x, sparse=True)``: x ``(B, L, dim)`` -> ``(B, L, dim)``; ``sparse=False`` is plain dense attention
    with the same weights (the teacher). ``dense_probs(x)`` gives the teacher's matrix; ``distill_loss(x, probs)``
    trains the estimator. Other arguments go to :class:`SEAEstimator`.
    """

    def __init__(self, dim: int, n_heads: int, **estimator):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim {dim} is not divisible by n_heads {n_heads}")
        self.n_heads, self.head_dim = n_heads, dim // n_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.est = SEAEstimator(self.head_dim, **estimator)

    def heads(self, x: torch.Tensor):
        """q, k, v ``(B, H, L, head_dim)``."""
        B, L, _ = x.shape
        return (t.view(B, L, self.n_heads, self.head_dim).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1))

    def forward(self, x: torch.Tensor, sparse: bool = True) -> torch.Tensor:
        B, L, dim = x.shape
        q, k, v = self.heads(x)
        if sparse:
            o = self.est.attend(q, k, v)
        else:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=self.est.causal)
        return self.out(o.transpose(1, 2).reshape(B, L, dim))

    def dense_probs(self, x: torch.Tensor) -> torch.Tensor:
        q, k, _ = self.heads(x)
        return _dense_probs(q, k, self.head_dim**-0.5, self.est.causal)

    def distill_loss(self, x: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
        q, k, v = self.heads(x)
        return self.est.distill_loss(q, k, v, teacher_probs)


# --- transformers: SEA inside a causal HF model through its attention interface --------------------------------------


def _sea_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers attention function: SEA over the model's q / k / v states (after RoPE). With
    ``module.sea.distilling`` it returns the dense output and stores the estimator's loss (layer-by-layer
    distillation: every layer sees the teacher's hidden states)."""
    est = getattr(module, "sea", None)
    if est is None:
        raise ValueError(f"layer {getattr(module, 'layer_idx', '?')} has no SEA estimator: call add_estimators")
    ctx = attention_mask
    if not isinstance(ctx, MaskContext) or ctx.mask_function is not causal_mask_function:
        raise ValueError("SEA runs a causal model's own causal mask through add_estimators")
    if ctx.q_offset or ctx.kv_offset or (ctx.padding_mask is not None and not bool(ctx.padding_mask.all())):
        raise ValueError("SEA runs whole unpadded sequences: no KV cache, no padding")
    if dropout:
        raise ValueError(f"SEA applies no attention dropout, got dropout={dropout}")
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)  # (B, H, L, D)
    if est.distilling:
        probs = _dense_probs(query, key, scaling, causal=True)
        est.last_loss = est.distill_loss(query, key, value, probs)
        out = probs @ value
    else:
        out = est.attend(query, key, value, scale=scaling)
    return out.transpose(1, 2).contiguous(), None  # (B, L, H, D)


def add_estimators(model, *, width: int = 128, k: int = 7, seed: int = 0, **estimator) -> dict[int, SEAEstimator]:
    """Give every self-attention layer of a causal transformers model a :class:`SEAEstimator` (submodule ``sea``,
    features drawn from ``seed + layer``) and run it with SEA. Returns the estimators by layer; switch back with
    ``model.set_attn_implementation("sdpa")``."""
    layers = attention_layers(model)
    max_len = getattr(model.config, "max_position_embeddings", 2048)
    for i, mod in layers.items():
        ref = mod.q_proj.weight
        est = SEAEstimator(mod.head_dim, width=width, k=k, causal=True, max_len=max_len, seed=seed + i, **estimator)
        mod.sea = est.to(device=ref.device, dtype=ref.dtype)
    use_attention(model, NAME, _sea_attention)
    return {i: mod.sea for i, mod in layers.items()}
